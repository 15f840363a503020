//! What the backbones share: the pre-processing from generator images, and the plain layers of
//! the transformers.
use tch::nn::{Init, Path};
use tch::Tensor;

pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Generator images in [-1, 1] (`[N, 1 or 3, H, W]`, any size; grey is repeated to RGB) to a
/// network's input: [0, 1], area-resized (`F.interpolate(mode='area')`, i.e. adaptive average
/// pooling) to `resolution`, then `(x - mean) / std`. Differentiable with respect to `images`.
pub fn preprocess(images: &Tensor, resolution: i64, mean: [f64; 3], std: [f64; 3]) -> Tensor {
    let (n, c, h, w) = images.size4().unwrap();
    let x = if c == 1 {
        images.expand([n, 3, h, w], false)
    } else {
        images.shallow_clone()
    };
    let x = x * 0.5 + 0.5;
    let x = if (h, w) == (resolution, resolution) {
        x
    } else {
        x.adaptive_avg_pool2d([resolution, resolution])
    };
    let channel = |v: [f64; 3]| {
        Tensor::from_slice(&v)
            .to_kind(x.kind())
            .to_device(x.device())
            .view([1, 3, 1, 1])
    };
    (&x - channel(mean)) / channel(std)
}

/// A linear layer (PyTorch's `nn.Linear` names: `weight`, `bias`).
#[derive(Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(vs: Path, cin: i64, cout: i64, bias: bool) -> Self {
        let weight = vs.var(
            "weight",
            &[cout, cin],
            Init::Randn {
                mean: 0.,
                stdev: 0.02,
            },
        );
        let bias = bias.then(|| vs.var("bias", &[cout], Init::Const(0.)));
        Self { weight, bias }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

/// LayerNorm over the last dimension.
#[derive(Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    width: i64,
    eps: f64,
}

impl LayerNorm {
    pub fn new(vs: Path, width: i64, eps: f64) -> Self {
        Self {
            weight: vs.var("weight", &[width], Init::Const(1.)),
            bias: vs.var("bias", &[width], Init::Const(0.)),
            width,
            eps,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm(
            [self.width],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )
    }
}
