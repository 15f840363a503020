//! The trainable heads on the frozen backbones (reference §2.2), in both reference variants:
//! - [`HeadVariant::StyleGan2`] (what produced the paper's StyleGAN2 numbers): equalised-lr
//!   convolutions and fully connected layers with lrelu·√2, down-sampling by upfirdn2d blur;
//! - [`HeadVariant::SpectralNorm`] (the pip package `vision-aided-loss`): spectrally normalised
//!   `nn.Conv2d`/`nn.Linear` with PyTorch's default initialisation, LeakyReLU(0.2) without
//!   gain, and the zero-padded stride-1 BlurPool before strided convolutions.
//!
//! Both give the same shapes. With the [1,3,3,1] filter:
//! - 3×3 conv that halves: blur with pad 2 (H → H+1), then stride 2: 14 → 7, 7 → 3, 8 → 4;
//! - 1×1 conv to the logit map: blur with pad 1 (H → H−1), then stride 2: 7 → 3.
//!
//! Every head can add a class-projection term `Σ_k embed(c)_k · h_k` on its last hidden vector
//! `h` (Miyato & Koyama 2018) for class-conditional data.
use super::spectral_norm::SpectralNorm;
use crate::backbones::bank::{Backbone, Features};
use crate::nets::layers::{
    blur_filter, leaky_relu, upfirdn2d, ConvConfig, EqualConv2d, EqualLinear, LinearConfig,
};
use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

/// Width of the heads' hidden layers, as in the reference (DINO's multi-level head uses 128).
pub const HIDDEN: i64 = 256;

/// Which of the reference's two layer families the heads are built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadVariant {
    #[default]
    StyleGan2,
    SpectralNorm,
}

impl FromStr for HeadVariant {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "stylegan2" => Ok(HeadVariant::StyleGan2),
            "sn" | "spectral_norm" => Ok(HeadVariant::SpectralNorm),
            other => bail!("unknown head variant '{other}' (expected stylegan2 or sn)"),
        }
    }
}

impl fmt::Display for HeadVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeadVariant::StyleGan2 => "stylegan2",
            HeadVariant::SpectralNorm => "sn",
        })
    }
}

/// What every head shares: the layer family and the number of classes (0: unconditional).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeadConfig {
    pub variant: HeadVariant,
    pub num_classes: i64,
}

/// A spectrally normalised conv (`conv: Some((stride, padding))`) or linear layer, optionally
/// preceded by the pip package's BlurPool (zero padding `blur_pad`, stride 1).
#[derive(Debug)]
struct SnLayer {
    blur: Option<(Tensor, i64)>,
    weight: SpectralNorm,
    bias: Tensor,
    conv: Option<(i64, i64)>,
    activate: bool,
}

impl SnLayer {
    fn new(
        vs: &Path,
        shape: &[i64],
        conv: Option<(i64, i64)>,
        blur_pad: Option<i64>,
        activate: bool,
    ) -> Self {
        let fan_in: i64 = shape[1..].iter().product();
        let bound = 1.0 / (fan_in as f64).sqrt();
        Self {
            blur: blur_pad.map(|p| (blur_filter(vs.device()), p)),
            weight: SpectralNorm::new(vs, shape),
            bias: vs.var(
                "bias",
                &[shape[0]],
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            ),
            conv,
            activate,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let x = match &self.blur {
            Some((f, p)) => upfirdn2d(x, f, 1, 1, [*p; 4], 1.0),
            None => x.shallow_clone(),
        };
        let w = self.weight.weight();
        let y = match self.conv {
            Some((stride, pad)) => x.conv2d(&w, Some(&self.bias), [stride; 2], [pad; 2], [1; 2], 1),
            None => x.linear(&w, Some(&self.bias)),
        };
        if self.activate {
            leaky_relu(&y)
        } else {
            y
        }
    }
}

/// One conv or fully connected layer of a head, in either variant.
#[derive(Debug)]
enum Layer {
    EqualConv(EqualConv2d),
    EqualFc(EqualLinear),
    Sn(SnLayer),
}

impl Layer {
    /// A `kernel`×`kernel` conv; `down` halves the size: blur (padded so that the stride-2
    /// kernel is centred, H → H+1 for 3×3, H → H−1 for 1×1), then stride 2.
    fn conv(
        vs: Path,
        variant: HeadVariant,
        (in_ch, out_ch, kernel): (i64, i64, i64),
        down: bool,
        activate: bool,
    ) -> Self {
        match variant {
            HeadVariant::StyleGan2 => Layer::EqualConv(EqualConv2d::new(
                vs,
                in_ch,
                out_ch,
                kernel,
                ConvConfig {
                    bias: true,
                    down,
                    activate,
                },
            )),
            HeadVariant::SpectralNorm => {
                let (conv, blur) = if down {
                    ((2, 0), Some((4 - 2 + kernel - 1) / 2))
                } else {
                    ((1, kernel / 2), None)
                };
                let shape = [out_ch, in_ch, kernel, kernel];
                Layer::Sn(SnLayer::new(&vs, &shape, Some(conv), blur, activate))
            }
        }
    }

    fn fc(vs: Path, variant: HeadVariant, in_f: i64, out_f: i64, activate: bool) -> Self {
        match variant {
            HeadVariant::StyleGan2 => {
                let cfg = if activate {
                    LinearConfig::lrelu()
                } else {
                    LinearConfig::default()
                };
                Layer::EqualFc(EqualLinear::new(vs, in_f, out_f, cfg))
            }
            HeadVariant::SpectralNorm => {
                Layer::Sn(SnLayer::new(&vs, &[out_f, in_f], None, None, activate))
            }
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Layer::EqualConv(l) => l.forward(x, 1.0),
            Layer::EqualFc(l) => l.forward(x),
            Layer::Sn(l) => l.forward(x),
        }
    }
}

/// The last two layers of every head, `h → out(h)` plus the optional class projection.
#[derive(Debug)]
struct Output {
    out: Layer,
    embed: Option<Tensor>,
}

impl Output {
    fn new(vs: &Path, cfg: &HeadConfig, hidden: i64) -> Self {
        Self {
            out: Layer::fc(vs / "out", cfg.variant, hidden, 1, false),
            // nn.Embedding's default initialisation, N(0, 1); no spectral norm.
            embed: (cfg.num_classes > 0).then(|| {
                vs.var(
                    "embed",
                    &[cfg.num_classes, hidden],
                    Init::Randn {
                        mean: 0.,
                        stdev: 1.,
                    },
                )
            }),
        }
    }

    /// `[B, hidden]` → `[B, 1]`. `labels`: `[B]` class indices, required iff conditional.
    fn forward(&self, h: &Tensor, labels: Option<&Tensor>) -> Tensor {
        let out = self.out.forward(h);
        match (&self.embed, labels) {
            (Some(embed), Some(c)) => {
                let e = embed.index_select(0, &c.to_kind(Kind::Int64));
                out + (e * h).sum_dim_intlist(1, true, None::<Kind>)
            }
            (Some(_), None) => panic!("a class-conditional head needs labels"),
            (None, _) => out,
        }
    }
}

/// One spatial level of [`MultiLevelDViT`]: 3×3 conv (stride 1, or halving) with activation,
/// then the blurred stride-2 1×1 conv to one channel, squeezed to `[B, H', W']`.
#[derive(Debug)]
struct SpatialLevel {
    conv: Layer,
    out: Layer,
}

/// The multi-level head of CLIP and DINO: `level − 1` spatial token maps `[B, in_ch1, H, W]`
/// each give a logit map, the final pooled vector `[B, in_ch2]` gives `[B, 1]`.
/// CLIP: (768, 512, 256, down 1) on 7×7 maps; DINO: (768, 768, 128, down 2) on 14×14 maps;
/// both give 3×3 logit maps.
#[derive(Debug)]
pub struct MultiLevelDViT {
    levels: Vec<SpatialLevel>,
    fc: Layer,
    output: Output,
}

impl MultiLevelDViT {
    /// `down` is 1 or 2 (the stride of the first conv on each spatial level).
    pub fn new(
        vs: Path,
        cfg: &HeadConfig,
        level: usize,
        in_ch1: i64,
        in_ch2: i64,
        out_ch: i64,
        down: i64,
    ) -> Self {
        assert!(level >= 1, "MultiLevelDViT needs at least one level");
        assert!(
            down == 1 || down == 2,
            "MultiLevelDViT: down must be 1 or 2, got {down}"
        );
        let levels = (0..level - 1)
            .map(|i| {
                let vs = &vs / format!("level{i}");
                SpatialLevel {
                    conv: Layer::conv(
                        &vs / "conv",
                        cfg.variant,
                        (in_ch1, out_ch, 3),
                        down == 2,
                        true,
                    ),
                    out: Layer::conv(&vs / "out", cfg.variant, (out_ch, 1, 1), true, false),
                }
            })
            .collect();
        Self {
            levels,
            fc: Layer::fc(&vs / "fc", cfg.variant, in_ch2, out_ch, true),
            output: Output::new(&vs, cfg, out_ch),
        }
    }

    /// `maps`: the `level − 1` spatial maps, `last`: the pooled vector. Returns the per-level
    /// logits, `[B, H', W']` for each map and `[B, 1]` last.
    pub fn forward(&self, maps: &[Tensor], last: &Tensor, labels: Option<&Tensor>) -> Vec<Tensor> {
        assert_eq!(
            maps.len(),
            self.levels.len(),
            "MultiLevelDViT expects {} spatial maps, got {}",
            self.levels.len(),
            maps.len()
        );
        let mut out: Vec<Tensor> = self
            .levels
            .iter()
            .zip(maps)
            .map(|(l, x)| l.out.forward(&l.conv.forward(x)).squeeze_dim(1))
            .collect();
        out.push(self.output.forward(&self.fc.forward(last), labels));
        out
    }

    pub fn num_levels(&self) -> usize {
        self.levels.len() + 1
    }
}

/// The head of the single-map backbones (Swin, VGG, EfficientNet-Lite): halving 3×3 conv to
/// `out_ch` channels, flatten, FC to `out_ch`, FC to 1. `out_size` is the spatial size after
/// the conv (3 for 7×7 maps, 4 for 8×8 maps).
#[derive(Debug)]
pub struct SimpleD {
    conv: Layer,
    fc: Layer,
    output: Output,
    out_size: i64,
}

impl SimpleD {
    pub fn new(vs: Path, cfg: &HeadConfig, in_ch: i64, out_ch: i64, out_size: i64) -> Self {
        Self {
            conv: Layer::conv(&vs / "conv", cfg.variant, (in_ch, out_ch, 3), true, true),
            fc: Layer::fc(
                &vs / "fc",
                cfg.variant,
                out_ch * out_size * out_size,
                out_ch,
                true,
            ),
            output: Output::new(&vs, cfg, out_ch),
            out_size,
        }
    }

    /// The spatial size after the halving conv for an `size`×`size` input map.
    pub fn out_size_for(size: i64) -> i64 {
        (size - 2) / 2 + 1
    }

    /// `[B, in_ch, H, W]` → `[B, 1]`.
    pub fn forward(&self, x: &Tensor, labels: Option<&Tensor>) -> Tensor {
        let h = self.conv.forward(x);
        let (_, _, hh, ww) = h.size4().unwrap();
        assert!(
            hh == self.out_size && ww == self.out_size,
            "SimpleD built for out_size {} got a {hh}×{ww} map after its conv",
            self.out_size
        );
        let h = self.fc.forward(&h.flatten(1, -1));
        self.output.forward(&h, labels)
    }
}

/// The head on a pooled vector: FC(in, out_ch) with activation, FC(out_ch, 1).
#[derive(Debug)]
pub struct MlpD {
    fc: Layer,
    output: Output,
}

impl MlpD {
    pub fn new(vs: Path, cfg: &HeadConfig, in_features: i64, out_ch: i64) -> Self {
        Self {
            fc: Layer::fc(&vs / "fc", cfg.variant, in_features, out_ch, true),
            output: Output::new(&vs, cfg, out_ch),
        }
    }

    /// `[B, in]` → `[B, 1]`.
    pub fn forward(&self, x: &Tensor, labels: Option<&Tensor>) -> Tensor {
        self.output.forward(&self.fc.forward(x), labels)
    }
}

/// A head of any kind, reading a backbone's [`Features`].
#[derive(Debug)]
pub enum Head {
    /// Reads the first `levels − 1` maps and the pooled vector.
    MultiLevel(MultiLevelDViT),
    /// Reads the last map.
    Simple(SimpleD),
    /// Reads the pooled vector.
    Mlp(MlpD),
}

impl Head {
    /// The reference's head for a backbone (§2.2), with the input sizes read from the
    /// backbone's own outputs (so tiny test configurations get matching heads):
    /// - CLIP: the multi-level head (hidden 256, stride-1 first conv) when `multi_level` (the
    ///   `conv_multi_level` output), else MLPD(hidden 256) on the pooled embedding;
    /// - DINO: the multi-level head (hidden 128, halving first conv), else MLPD(256);
    /// - Swin-T, VGG-16 and EfficientNet-Lite: SimpleD(hidden 256) on their last map (for
    ///   EfficientNet-Lite the final 1280-channel map, following the same pattern).
    pub fn for_backbone(
        vs: Path,
        backbone: &Backbone,
        cfg: &HeadConfig,
        multi_level: bool,
    ) -> Result<Self> {
        let probe = tch::no_grad(|| {
            backbone.forward(&Tensor::zeros(
                [1, 3, 32, 32],
                (backbone.kind(), backbone.device()),
            ))
        });
        let channels = |t: &Tensor| t.size()[1];
        let vit = match backbone.name {
            "clip_vit_b32" => Some((HIDDEN, 1)),
            "dino_vitb16" => Some((128, 2)),
            _ => None,
        };
        Ok(match vit {
            Some((hidden, down)) if multi_level => {
                ensure!(
                    probe.maps.len() >= 2,
                    "{} gave {} maps, the multi-level head needs 2",
                    backbone.name,
                    probe.maps.len()
                );
                Head::MultiLevel(MultiLevelDViT::new(
                    vs,
                    cfg,
                    3,
                    channels(&probe.maps[0]),
                    channels(&probe.pooled),
                    hidden,
                    down,
                ))
            }
            Some(_) => Head::Mlp(MlpD::new(vs, cfg, channels(&probe.pooled), HIDDEN)),
            None => {
                let map = probe.maps.last().expect("every backbone gives a map");
                let size = map.size()[2];
                Head::Simple(SimpleD::new(
                    vs,
                    cfg,
                    channels(map),
                    HIDDEN,
                    SimpleD::out_size_for(size),
                ))
            }
        })
    }

    /// The head's logits: one tensor, or one per level for the multi-level head.
    pub fn forward(&self, f: &Features, labels: Option<&Tensor>) -> Vec<Tensor> {
        match self {
            Head::MultiLevel(h) => {
                let n = h.num_levels() - 1;
                assert!(
                    f.maps.len() >= n,
                    "multi-level head needs {n} maps, the backbone gave {}",
                    f.maps.len()
                );
                h.forward(&f.maps[..n], &f.pooled, labels)
            }
            Head::Simple(h) => {
                let map = f.maps.last().expect("SimpleD needs a spatial map");
                vec![h.forward(map, labels)]
            }
            Head::Mlp(h) => vec![h.forward(&f.pooled, labels)],
        }
    }

    /// Whether the head returns several levels (it then needs a `multilevel_*` loss).
    pub fn is_multilevel(&self) -> bool {
        matches!(self, Head::MultiLevel(_))
    }
}
