//! VGG-16 `features` (plain and anti-aliased), frozen, with the variable names of torchvision's
//! and adobe's `antialiased_cnns` `VGG.features` (`features.N.weight/bias`, N the index in the
//! `nn.Sequential`), so that either state dict loads directly (timm's `vgg16` uses the same names
//! for its convolutions; its `pre_logits.*`/`head.*` and torchvision's `classifier.*` are not used
//! here, see [`is_unused_key`]).
//!
//! Plain VGG pools with `MaxPool2d(2, stride 2)`. The anti-aliased network (Zhang 2019, the
//! `antialiased_cnns.vgg16(filter_size=4)` the vision-aided reference loads) replaces every pool
//! by `MaxPool2d(2, stride 1)` followed by `BlurPool`: the depthwise filter
//! [1,3,3,1]⊗[1,3,3,1]/64 with stride 2 after reflect padding (left 1, right 2, top 1, bottom 2).
//! Each pool then takes two `Sequential` slots, which shifts the indices of the later
//! convolutions, and the blur filter is a buffer of the state dict (`features.N.filt`,
//! `[C, 1, 4, 4]`); here it is a non-trainable variable set to its fixed value at construction.
use super::common::{preprocess, IMAGENET_MEAN, IMAGENET_STD};
use std::collections::HashMap;
use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct VggConfig {
    pub name: String,
    /// Anti-aliased pools (MaxPool stride 1 + BlurPool filter 4) instead of MaxPool stride 2.
    pub antialiased: bool,
    /// The output channels of the 3×3 convolutions of each stage; a pool follows every stage.
    pub stages: Vec<Vec<i64>>,
    /// Images are area-resized to `resolution`×`resolution` before the network.
    pub resolution: i64,
}

/// VGG-16 ("D"): 13 convolutions in 5 stages.
const VGG16_STAGES: [&[i64]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256],
    &[512, 512, 512],
    &[512, 512, 512],
];

impl VggConfig {
    /// VGG-16 with channel widths divided by `divisor` (1 for the real network).
    fn vgg16_scaled(name: &str, antialiased: bool, divisor: i64) -> Self {
        Self {
            name: name.to_string(),
            antialiased,
            stages: VGG16_STAGES
                .iter()
                .map(|s| s.iter().map(|c| c / divisor).collect())
                .collect(),
            resolution: 224,
        }
    }

    /// torchvision's `vgg16().features`.
    pub fn vgg16() -> Self {
        Self::vgg16_scaled("vgg16", false, 1)
    }

    /// `antialiased_cnns.vgg16(filter_size=4).features`, the vision-aided `vgg` backbone.
    pub fn vgg16_antialiased() -> Self {
        Self::vgg16_scaled("vgg16-lpf4", true, 1)
    }

    /// A tiny network for tests (as `scripts/fixtures/vgg.py` builds it): VGG-16 with every width
    /// divided by 16, at the real resolution 224.
    pub fn tiny(antialiased: bool) -> Self {
        Self::vgg16_scaled("vgg16-tiny", antialiased, 16)
    }

    /// The channels of the last convolution (512 for VGG-16).
    pub fn out_channels(&self) -> i64 {
        self.stages
            .iter()
            .rev()
            .find_map(|s| s.last().copied())
            .unwrap_or(3)
    }
}

/// The antialiased-cnns release files nest the state dict under `state_dict` (and a training
/// checkpoint may carry DataParallel's `module.`): both prefixes are dropped.
pub fn convert_checkpoint(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    tensors
        .into_iter()
        .map(|(k, v)| {
            let k = k.strip_prefix("state_dict.").unwrap_or(&k);
            (k.strip_prefix("module.").unwrap_or(k).to_string(), v)
        })
        .collect()
}

/// Keys of torchvision/antialiased_cnns/timm VGG checkpoints that belong to the classifier and
/// have no variable here.
pub fn is_unused_key(name: &str) -> bool {
    ["classifier.", "pre_logits.", "head."]
        .iter()
        .any(|p| name.starts_with(p))
}

#[derive(Debug)]
struct Conv {
    weight: Tensor,
    bias: Tensor,
}

#[derive(Debug)]
enum Layer {
    /// 3×3 convolution, padding 1, then ReLU.
    Conv(Conv),
    /// `MaxPool2d(2, 2)`.
    MaxPool,
    /// `MaxPool2d(2, 1)` then BlurPool (the filter `[C, 1, 4, 4]`).
    BlurPool(Tensor),
}

#[derive(Debug)]
pub struct Vgg {
    layers: Vec<Layer>,
    resolution: i64,
}

pub struct VggOutput {
    /// `features(x)`, after the last pool: `[N, 512, 7, 7]` at 224.
    pub map: Tensor,
    /// `[N, 512]`, the spatial mean of `map`.
    pub pooled: Tensor,
}

/// The normalised 4×4 blur filter [1,3,3,1]⊗[1,3,3,1]/64.
fn blur_filter(channels: i64) -> Tensor {
    let a = Tensor::from_slice(&[1.0f32, 3.0, 3.0, 1.0]);
    let f = a.unsqueeze(1) * a.unsqueeze(0) / 64.0;
    f.view([1, 1, 4, 4]).repeat([channels, 1, 1, 1])
}

impl Vgg {
    pub fn new(vs: Path, cfg: &VggConfig) -> Self {
        let features = &vs / "features";
        let mut layers = Vec::new();
        let mut index = 0i64;
        let mut cin = 3;
        for stage in &cfg.stages {
            for &cout in stage {
                let p = &features / index;
                let fan_in = (cin * 9) as f64;
                let weight = p.var(
                    "weight",
                    &[cout, cin, 3, 3],
                    Init::Randn {
                        mean: 0.,
                        stdev: (2.0 / fan_in).sqrt(),
                    },
                );
                let bias = p.var("bias", &[cout], Init::Const(0.));
                layers.push(Layer::Conv(Conv { weight, bias }));
                cin = cout;
                // The convolution and its ReLU.
                index += 2;
            }
            if cfg.antialiased {
                // MaxPool(2, 1) at `index`, BlurPool at `index + 1`.
                let mut filt = (&features / (index + 1)).zeros_no_train("filt", &[cin, 1, 4, 4]);
                tch::no_grad(|| filt.copy_(&blur_filter(cin).to_device(filt.device())));
                layers.push(Layer::BlurPool(filt));
                index += 2;
            } else {
                layers.push(Layer::MaxPool);
                index += 1;
            }
        }
        Self {
            layers,
            resolution: cfg.resolution,
        }
    }

    /// Images in [-1, 1] (`[N, 1 or 3, H, W]`, any size; grey is repeated to RGB): to [0, 1],
    /// area-resized to the configured resolution, ImageNet mean/std, then `features`.
    /// Differentiable with respect to `images`.
    pub fn forward(&self, images: &Tensor) -> VggOutput {
        let mut x = preprocess(images, self.resolution, IMAGENET_MEAN, IMAGENET_STD);
        for layer in &self.layers {
            x = match layer {
                Layer::Conv(conv) => x
                    .conv2d(&conv.weight, Some(&conv.bias), [1, 1], [1, 1], [1, 1], 1)
                    .relu(),
                Layer::MaxPool => x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false),
                Layer::BlurPool(filt) => {
                    let channels = filt.size()[0];
                    x.max_pool2d([2, 2], [1, 1], [0, 0], [1, 1], false)
                        .reflection_pad2d([1, 2, 1, 2])
                        .conv2d(filt, None::<Tensor>, [2, 2], [0, 0], [1, 1], channels)
                }
            };
        }
        let pooled = x.mean_dim(&[2i64, 3][..], false, None::<Kind>);
        VggOutput { map: x, pooled }
    }
}
