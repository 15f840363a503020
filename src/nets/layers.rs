//! StyleGAN2 building blocks: equalised-learning-rate layers, FIR resampling and modulated
//! convolution.
//!
//! Equalised learning rate: every weight is stored as N(0, 1/lr_mult²) and scaled at run time by
//! `lr_mult / sqrt(fan_in)`, so that Adam's per-parameter step sizes are the same for all layers.
use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

pub const SQRT_2: f64 = std::f64::consts::SQRT_2;

/// Leaky ReLU with slope 0.2 followed by StyleGAN2's gain √2. tch's `leaky_relu` has a fixed
/// 0.01 slope, so this calls libtorch's `leaky_relu_backward(grad_output = x, self = x, 0.2)`:
/// the same piecewise-linear function with a native kernel, 4-5× faster than
/// `maximum(x, 0.2·x)` through the double backward of R1 and path-length regularisation.
/// `self` only selects the slope, so it is detached: its derivative is zero anyway, and
/// autograd would otherwise materialise and add that zero at every layer.
pub fn lrelu(x: &Tensor) -> Tensor {
    leaky_relu(x) * SQRT_2
}

/// Leaky ReLU with slope 0.2 and no gain (`nn.LeakyReLU(0.2)`), by the same native kernel.
pub fn leaky_relu(x: &Tensor) -> Tensor {
    x.detach().leaky_relu_backward(x, 0.2, false)
}

/// The separable [1, 3, 3, 1] low-pass filter, normalised to sum 1, as a 4×4 tensor.
pub fn blur_filter(device: tch::Device) -> Tensor {
    let f = Tensor::from_slice(&[1f32, 3., 3., 1.]).to_device(device);
    let f2 = f.outer(&f);
    &f2 / f2.sum(None::<Kind>)
}

/// Upsample by zero insertion, pad, filter with a 2-D FIR filter `f` (scaled by `gain`) and
/// keep every `down`-th sample. `pad` is (x0, x1, y0, y1); negative values crop.
/// The filter is symmetric, so correlation (conv2d) equals convolution here.
pub fn upfirdn2d(x: &Tensor, f: &Tensor, up: i64, down: i64, pad: [i64; 4], gain: f64) -> Tensor {
    let (n, c, h, w) = x.size4().unwrap();
    let mut y = if up > 1 {
        x.reshape([n, c, h, 1, w, 1])
            .constant_pad_nd([0, up - 1, 0, 0, 0, up - 1])
            .reshape([n, c, h * up, w * up])
    } else {
        x.shallow_clone()
    };
    y = y.constant_pad_nd(pad);
    let (fh, fw) = (f.size()[0], f.size()[1]);
    let weight = (f * gain)
        .to_kind(y.kind())
        .reshape([1, 1, fh, fw])
        .expand([c, 1, fh, fw], false);
    y.conv2d(&weight, None::<Tensor>, [down, down], [0, 0], [1, 1], c)
}

/// 2× upsampling of an image with the blur filter (the skip path of the generator).
pub fn upsample2d(x: &Tensor, f: &Tensor) -> Tensor {
    upfirdn2d(x, f, 2, 1, [2, 1, 2, 1], 4.0)
}

/// A conv weight stored as N(0, 1): the equalised-learning-rate gain is applied at run time.
fn conv_weight(vs: &Path, out_ch: i64, in_ch: i64, kernel: i64) -> Tensor {
    vs.var(
        "weight",
        &[out_ch, in_ch, kernel, kernel],
        Init::Randn {
            mean: 0.,
            stdev: 1.,
        },
    )
}

/// Fully connected layer with equalised learning rate and optional lrelu.
#[derive(Debug)]
pub struct EqualLinear {
    weight: Tensor,
    bias: Option<Tensor>,
    weight_gain: f64,
    bias_gain: f64,
    activate: bool,
}

impl EqualLinear {
    pub fn new(vs: Path, in_features: i64, out_features: i64, cfg: LinearConfig) -> Self {
        let weight = vs.var(
            "weight",
            &[out_features, in_features],
            Init::Randn {
                mean: 0.,
                stdev: 1. / cfg.lr_mult,
            },
        );
        let bias = cfg.bias.then(|| {
            vs.var(
                "bias",
                &[out_features],
                Init::Const(cfg.bias_init / cfg.lr_mult),
            )
        });
        Self {
            weight,
            bias,
            weight_gain: cfg.lr_mult / (in_features as f64).sqrt(),
            bias_gain: cfg.lr_mult,
            activate: cfg.activate,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let w = &self.weight * self.weight_gain;
        let b = self.bias.as_ref().map(|b| b * self.bias_gain);
        let y = x.linear(&w, b.as_ref());
        if self.activate {
            lrelu(&y)
        } else {
            y
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LinearConfig {
    pub bias: bool,
    pub bias_init: f64,
    pub lr_mult: f64,
    pub activate: bool,
}

impl Default for LinearConfig {
    fn default() -> Self {
        Self {
            bias: true,
            bias_init: 0.,
            lr_mult: 1.,
            activate: false,
        }
    }
}

impl LinearConfig {
    pub fn lrelu() -> Self {
        Self {
            activate: true,
            ..Self::default()
        }
    }
}

/// Convolution with equalised learning rate, optional 2× blurred down-sampling and lrelu; the
/// discriminator's layer.
#[derive(Debug)]
pub struct EqualConv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    weight_gain: f64,
    kernel: i64,
    down: bool,
    activate: bool,
    filter: Tensor,
}

impl EqualConv2d {
    pub fn new(vs: Path, in_ch: i64, out_ch: i64, kernel: i64, cfg: ConvConfig) -> Self {
        let weight = conv_weight(&vs, out_ch, in_ch, kernel);
        let bias = cfg.bias.then(|| vs.var("bias", &[out_ch], Init::Const(0.)));
        Self {
            weight,
            bias,
            weight_gain: 1. / ((in_ch * kernel * kernel) as f64).sqrt(),
            kernel,
            down: cfg.down,
            activate: cfg.activate,
            filter: blur_filter(vs.device()),
        }
    }

    /// `gain` multiplies the output after the activation (the residual blocks use √0.5).
    pub fn forward(&self, x: &Tensor, gain: f64) -> Tensor {
        let w = &self.weight * self.weight_gain;
        let k = self.kernel;
        let y = if !self.down {
            x.conv2d(&w, self.bias.as_ref(), [1, 1], [k / 2, k / 2], [1, 1], 1)
        } else if k == 1 {
            // Blur and subsample first: a 1×1 conv commutes with the resampling and is cheaper after it.
            let x = upfirdn2d(x, &self.filter, 1, 2, [1, 1, 1, 1], 1.0);
            x.conv2d(&w, self.bias.as_ref(), [1, 1], [0, 0], [1, 1], 1)
        } else {
            // Blur with the padding that centres the stride-2 kernel: H → H+1 → H/2.
            let p = (4 - 2 + k - 1) / 2;
            let x = upfirdn2d(x, &self.filter, 1, 1, [p, p, p, p], 1.0);
            x.conv2d(&w, self.bias.as_ref(), [2, 2], [0, 0], [1, 1], 1)
        };
        let y = if self.activate { lrelu(&y) } else { y };
        if gain != 1.0 {
            y * gain
        } else {
            y
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ConvConfig {
    pub bias: bool,
    pub down: bool,
    pub activate: bool,
}

impl Default for ConvConfig {
    fn default() -> Self {
        Self {
            bias: true,
            down: false,
            activate: true,
        }
    }
}

/// StyleGAN2's modulated convolution: the style scales the input channels, the weights are
/// demodulated per output channel, optionally with 2× blurred up-sampling. Implemented with a
/// shared (non-grouped) convolution: scaling x by the style before and by the demodulation
/// coefficient after is the same as convolving with per-sample modulated weights.
#[derive(Debug)]
pub struct ModulatedConv2d {
    affine: EqualLinear,
    weight: Tensor,
    kernel: i64,
    up: bool,
    demodulate: bool,
    style_gain: f64,
    filter: Tensor,
}

impl ModulatedConv2d {
    pub fn new(
        vs: Path,
        w_dim: i64,
        in_ch: i64,
        out_ch: i64,
        kernel: i64,
        up: bool,
        demodulate: bool,
    ) -> Self {
        let affine = EqualLinear::new(
            &vs / "affine",
            w_dim,
            in_ch,
            LinearConfig {
                bias_init: 1.,
                ..Default::default()
            },
        );
        let weight = conv_weight(&vs, out_ch, in_ch, kernel);
        // With demodulation the weight scale cancels; without it (toRGB) the equalised-lr gain applies.
        let style_gain = if demodulate {
            1.
        } else {
            1. / ((in_ch * kernel * kernel) as f64).sqrt()
        };
        Self {
            affine,
            weight,
            kernel,
            up,
            demodulate,
            style_gain,
            filter: blur_filter(vs.device()),
        }
    }

    pub fn forward(&self, x: &Tensor, w: &Tensor) -> Tensor {
        let styles = self.affine.forward(w) * self.style_gain; // [N, in]
        let x = x * styles.unsqueeze(-1).unsqueeze(-1);
        let k = self.kernel;
        let y = if self.up {
            // Transposed stride-2 conv with the flipped kernel equals zero-insertion upsampling
            // followed by a same-padded conv; the blur (pad 1,1, gain 4) completes the 2× FIR up-sampling.
            let wt = self.weight.flip([2, 3]).transpose(0, 1);
            let y = x.conv_transpose2d(&wt, None::<Tensor>, [2, 2], [0, 0], [0, 0], 1, [1, 1]);
            upfirdn2d(&y, &self.filter, 1, 1, [1, 1, 1, 1], 4.0)
        } else {
            x.conv2d(
                &self.weight,
                None::<Tensor>,
                [1, 1],
                [k / 2, k / 2],
                [1, 1],
                1,
            )
        };
        if self.demodulate {
            // d[n, o] = 1 / sqrt(sum_{i,kh,kw} (W[o,i,kh,kw] * s[n,i])^2 + 1e-8)
            let wsq = self
                .weight
                .square()
                .sum_dim_intlist(&[2i64, 3][..], false, None::<Kind>); // [out, in]
            let d = (styles.square().matmul(&wsq.transpose(0, 1)) + 1e-8).rsqrt(); // [N, out]
            y * d.unsqueeze(-1).unsqueeze(-1)
        } else {
            y
        }
    }
}
