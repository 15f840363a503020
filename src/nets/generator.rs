//! The StyleGAN2 generator: mapping network, synthesis network with modulated convolutions,
//! noise inputs and skip ("toRGB at every resolution") outputs.
use super::layers::{blur_filter, lrelu, upsample2d, EqualLinear, LinearConfig, ModulatedConv2d};
use serde::{Deserialize, Serialize};
use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GeneratorConfig {
    pub z_dim: i64,
    pub w_dim: i64,
    pub mapping_layers: i64,
    pub resolution: i64,
    pub img_channels: i64,
    /// Feature maps at resolution r: min(channel_base / r, channel_max).
    pub channel_base: i64,
    pub channel_max: i64,
}

impl GeneratorConfig {
    pub fn channels(&self, res: i64) -> i64 {
        (self.channel_base / res).min(self.channel_max)
    }

    /// Resolutions of the synthesis blocks: 4, 8, ..., resolution.
    pub fn block_resolutions(&self) -> Vec<i64> {
        std::iter::successors(Some(4i64), |r| Some(r * 2))
            .take_while(|&r| r <= self.resolution)
            .collect()
    }

    /// One w per modulated layer: the 4×4 block has one conv, the others two, plus the last toRGB.
    pub fn num_ws(&self) -> i64 {
        2 * self.block_resolutions().len() as i64
    }
}

/// How the per-pixel noise inputs are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseMode {
    /// Fresh N(0, 1) noise every call (training).
    Random,
    /// The fixed noise buffers stored with the network (reproducible generation).
    Const,
    None,
}

#[derive(Debug)]
struct MappingNetwork {
    layers: Vec<EqualLinear>,
    w_avg: Tensor,
}

impl MappingNetwork {
    fn new(vs: Path, cfg: &GeneratorConfig) -> Self {
        let lin = LinearConfig {
            lr_mult: 0.01,
            ..LinearConfig::lrelu()
        };
        let layers = (0..cfg.mapping_layers)
            .map(|i| {
                let in_f = if i == 0 { cfg.z_dim } else { cfg.w_dim };
                EqualLinear::new(&vs / format!("fc{i}"), in_f, cfg.w_dim, lin)
            })
            .collect();
        let w_avg = vs.zeros_no_train("w_avg", &[cfg.w_dim]);
        Self { layers, w_avg }
    }

    fn forward(&self, z: &Tensor) -> Tensor {
        // Normalise z to unit second moment, as StyleGAN does.
        let mut x = z * (z.square().mean_dim(1, true, None::<Kind>) + 1e-8).rsqrt();
        for l in &self.layers {
            x = l.forward(&x);
        }
        x
    }
}

#[derive(Debug)]
struct SynthesisLayer {
    conv: ModulatedConv2d,
    noise_strength: Tensor,
    noise_const: Tensor,
    bias: Tensor,
}

impl SynthesisLayer {
    fn new(vs: Path, w_dim: i64, in_ch: i64, out_ch: i64, res: i64, up: bool) -> Self {
        Self {
            conv: ModulatedConv2d::new(&vs / "conv", w_dim, in_ch, out_ch, 3, up, true),
            noise_strength: vs.var("noise_strength", &[], Init::Const(0.)),
            noise_const: vs.add(
                "noise_const",
                Tensor::randn([res, res], (Kind::Float, vs.device())),
                false,
            ),
            bias: vs.var("bias", &[out_ch], Init::Const(0.)),
        }
    }

    fn forward(&self, x: &Tensor, w: &Tensor, noise: NoiseMode) -> Tensor {
        let y = self.conv.forward(x, w);
        let (n, _, h, wd) = y.size4().unwrap();
        let y = match noise {
            NoiseMode::Random => {
                let noise = Tensor::randn([n, 1, h, wd], (y.kind(), y.device()));
                y + noise * &self.noise_strength
            }
            NoiseMode::Const => y + &self.noise_const * &self.noise_strength,
            NoiseMode::None => y,
        };
        lrelu(&(y + self.bias.reshape([1, -1, 1, 1])))
    }
}

#[derive(Debug)]
struct ToRgb {
    conv: ModulatedConv2d,
    bias: Tensor,
}

impl ToRgb {
    fn new(vs: Path, w_dim: i64, in_ch: i64, img_ch: i64) -> Self {
        Self {
            conv: ModulatedConv2d::new(&vs / "conv", w_dim, in_ch, img_ch, 1, false, false),
            bias: vs.var("bias", &[img_ch], Init::Const(0.)),
        }
    }

    fn forward(&self, x: &Tensor, w: &Tensor) -> Tensor {
        self.conv.forward(x, w) + self.bias.reshape([1, -1, 1, 1])
    }
}

#[derive(Debug)]
struct SynthesisBlock {
    conv0: Option<SynthesisLayer>,
    conv1: SynthesisLayer,
    torgb: ToRgb,
}

/// The generator: `forward(z, psi)` gives images in about [-1, 1], NCHW.
#[derive(Debug)]
pub struct Generator {
    pub cfg: GeneratorConfig,
    mapping: MappingNetwork,
    constant: Tensor,
    blocks: Vec<SynthesisBlock>,
    filter: Tensor,
}

impl Generator {
    pub fn new(vs: Path, cfg: &GeneratorConfig) -> Self {
        let mapping = MappingNetwork::new(&vs / "mapping", cfg);
        let syn = &vs / "synthesis";
        let c4 = cfg.channels(4);
        let constant = syn.var(
            "const",
            &[c4, 4, 4],
            Init::Randn {
                mean: 0.,
                stdev: 1.,
            },
        );
        let blocks = cfg
            .block_resolutions()
            .into_iter()
            .map(|res| {
                let b = &syn / format!("b{res}");
                let out_ch = cfg.channels(res);
                let conv0 = (res > 4).then(|| {
                    SynthesisLayer::new(
                        &b / "conv0",
                        cfg.w_dim,
                        cfg.channels(res / 2),
                        out_ch,
                        res,
                        true,
                    )
                });
                SynthesisBlock {
                    conv0,
                    conv1: SynthesisLayer::new(&b / "conv1", cfg.w_dim, out_ch, out_ch, res, false),
                    torgb: ToRgb::new(&b / "torgb", cfg.w_dim, out_ch, cfg.img_channels),
                }
            })
            .collect();
        Self {
            cfg: cfg.clone(),
            mapping,
            constant,
            blocks,
            filter: blur_filter(vs.device()),
        }
    }

    /// z → w, broadcast to one w per layer, with truncation towards the tracked mean w.
    pub fn map(&self, z: &Tensor, truncation_psi: f64) -> Tensor {
        let w = self.mapping.forward(z);
        let w = if truncation_psi != 1.0 {
            self.mapping.w_avg.lerp(&w, truncation_psi)
        } else {
            w
        };
        w.unsqueeze(1).repeat([1, self.cfg.num_ws(), 1])
    }

    /// Moves the tracked mean w towards the batch mean (training only, β = 0.995).
    pub fn update_w_avg(&self, ws: &Tensor) {
        tch::no_grad(|| {
            let batch_mean = ws.select(1, 0).mean_dim(0, false, None::<Kind>);
            let mut w_avg = self.mapping.w_avg.shallow_clone();
            w_avg.copy_(&batch_mean.lerp(&w_avg, 0.995));
        });
    }

    pub fn synthesis(&self, ws: &Tensor, noise: NoiseMode) -> Tensor {
        let n = ws.size()[0];
        let mut x = self.constant.unsqueeze(0).repeat([n, 1, 1, 1]);
        let mut img: Option<Tensor> = None;
        let mut w_idx = 0;
        for block in &self.blocks {
            let mut idx = w_idx;
            if let Some(conv0) = &block.conv0 {
                x = conv0.forward(&x, &ws.select(1, idx), noise);
                idx += 1;
            }
            x = block.conv1.forward(&x, &ws.select(1, idx), noise);
            let rgb = block.torgb.forward(&x, &ws.select(1, idx + 1));
            img = Some(match img {
                Some(prev) => upsample2d(&prev, &self.filter) + rgb,
                None => rgb,
            });
            w_idx = idx + 1;
        }
        img.expect("at least one block")
    }

    pub fn forward(&self, z: &Tensor, truncation_psi: f64, noise: NoiseMode) -> Tensor {
        self.synthesis(&self.map(z, truncation_psi), noise)
    }
}
