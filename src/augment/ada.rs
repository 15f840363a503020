//! Adaptive discriminator augmentation (ADA; Karras et al. 2020, "Training Generative
//! Adversarial Networks with Limited Data", appendix B), pipeline "bgc", written from the
//! paper's description. Images are `[N, C, H, W]` in [-1, 1], C = 1 or 3, square, on any
//! device; the output is a differentiable function of the images (gradients of every order, so
//! R1 can be taken through it).
//!
//! Every transformation is applied to each sample independently with probability
//! `p · multiplier` (multiplier 1 for every transform of "bgc"); where it is not applied its
//! parameter takes the identity value. Parameters, in the paper's order:
//!
//! | transform | parameter where applied |
//! |---|---|
//! | xflip | mirror x with i ~ U{0, 1} (so a sample is mirrored with probability p/2) |
//! | rotate90 | rotate by i·90°, i ~ U{0, 1, 2, 3} |
//! | xint | translate by round(t·size) pixels, t ~ U(-0.125, 0.125) per axis |
//! | scale | isotropic scale s, log2 s ~ N(0, 0.2²) |
//! | rotate | rotate by θ ~ U(-π, π), twice (before and after aniso), each with 1 - √(1 - p) |
//! | aniso | scale (s, 1/s), log2 s ~ N(0, 0.2²) |
//! | xfrac | translate by t·size pixels, t ~ N(0, 0.125²) per axis |
//! | brightness | add b ~ N(0, 0.2²) |
//! | contrast | multiply by c, log2 c ~ N(0, 0.5²) |
//! | lumaflip | reflect across the plane orthogonal to the luma axis v = (1, 1, 1)/√3 with i ~ U{0, 1} |
//! | hue | rotate around v by θ ~ U(-π, π) |
//! | saturation | scale the component orthogonal to v by s, log2 s ~ N(0, 1) |
//!
//! The geometric transforms compose into one homogeneous 3×3 matrix per sample, which maps each
//! output pixel to the input position it reads. The image is reflect-padded as far as the batch
//! needs (at most size - 1 per side, the limit of reflection; beyond that it is zero),
//! upsampled 2× with the Symlet-6 wavelet low-pass filter (12 taps, below), sampled bilinearly
//! at the transformed positions on the 2× grid, and downsampled 2× with the same filter. The
//! 2× grid of the padded batch is the big cost: at p = 1, 32 RGB images of 224² typically need
//! about 150 pixels of padding per side, a buffer of ~0.4 GB. The filter is
//! orthonormal, so upsampling with it (transposed convolution) followed by downsampling with it
//! (strided correlation) is exactly the identity: with the identity matrix the chain returns
//! the input up to rounding. The colour transforms compose into one 4×4 matrix per sample
//! acting on (r, g, b, 1), applied after the geometry. A grey image is treated as the RGB image
//! (g, g, g) and the three output channels are averaged, so hue and saturation leave it
//! unchanged and lumaflip negates it.
//!
//! Where this differs from the paper's description or its reference implementation:
//! - When no sample of a batch has a non-integer geometric matrix (flips, quarter turns and
//!   integer shifts only), pixels are copied (with reflection) instead of resampled: the result
//!   is the one the filter chain gives in exact arithmetic, bit for bit.
//! - The 2× grid is aligned on the filter's centre (its DC group delay, about 5.1 taps), so that
//!   rotations and scalings are about the image centre for the low frequencies; the filter is
//!   not symmetric, so that alignment is exact only for them.
//! - Bilinear sampling is written with gathers, not `grid_sample`, whose backward libtorch
//!   cannot differentiate again; the values are those of bilinear sampling with zero padding,
//!   the zeros lying beyond the reflect padding in the 1× image rather than in the 2× grid.
//! - Random parameters are drawn on the CPU from libtorch's default generator, so a seed gives
//!   the same augmentation on every device (the training loop reseeds it at each step).
//! - Only the "bgc" transforms exist (no filtering, noise or cutout; the vision-aided
//!   discriminator applies cutout separately). The multipliers scale probabilities, as in ADA;
//!   the ranges are fixed at the paper's values.
use anyhow::{bail, Context, Result};
use std::fmt;
use std::str::FromStr;
use tch::{Device, Kind, Tensor};

/// The transforms of the "bgc" pipeline, in the order they are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transform {
    XFlip,
    Rotate90,
    XInt,
    Scale,
    Rotate,
    Aniso,
    XFrac,
    Brightness,
    Contrast,
    LumaFlip,
    Hue,
    Saturation,
}

impl Transform {
    pub const ALL: [Transform; 12] = [
        Transform::XFlip,
        Transform::Rotate90,
        Transform::XInt,
        Transform::Scale,
        Transform::Rotate,
        Transform::Aniso,
        Transform::XFrac,
        Transform::Brightness,
        Transform::Contrast,
        Transform::LumaFlip,
        Transform::Hue,
        Transform::Saturation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Transform::XFlip => "xflip",
            Transform::Rotate90 => "rotate90",
            Transform::XInt => "xint",
            Transform::Scale => "scale",
            Transform::Rotate => "rotate",
            Transform::Aniso => "aniso",
            Transform::XFrac => "xfrac",
            Transform::Brightness => "brightness",
            Transform::Contrast => "contrast",
            Transform::LumaFlip => "lumaflip",
            Transform::Hue => "hue",
            Transform::Saturation => "saturation",
        }
    }

    /// ADA's group letter: b(lit), g(eometric), c(olour).
    fn group(self) -> char {
        match self {
            Transform::XFlip | Transform::Rotate90 | Transform::XInt => 'b',
            Transform::Scale | Transform::Rotate | Transform::Aniso | Transform::XFrac => 'g',
            _ => 'c',
        }
    }
}

/// Per-transform probability multipliers; the default has every transform off.
///
/// Parsed from group letters (`bgc`, `bg`, `c`, ... : b = xflip, rotate90, xint; g = scale,
/// rotate, aniso, xfrac; c = the colour transforms), from `none`, or from a comma-separated
/// list of transform names, each optionally `=multiplier` (`xflip,rotate=0.5`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdaPipeline {
    multipliers: [f64; 12],
}

impl AdaPipeline {
    /// Every transform with multiplier 1: ADA's default pipeline.
    pub fn bgc() -> Self {
        Self {
            multipliers: [1.0; 12],
        }
    }

    /// One transform alone, with multiplier 1.
    pub fn only(transform: Transform) -> Self {
        Self::default().with(transform, 1.0)
    }

    pub fn with(mut self, transform: Transform, multiplier: f64) -> Self {
        assert!(
            multiplier.is_finite() && multiplier >= 0.0,
            "multiplier {multiplier}"
        );
        self.multipliers[transform as usize] = multiplier;
        self
    }

    pub fn multiplier(&self, transform: Transform) -> f64 {
        self.multipliers[transform as usize]
    }

    fn groups(letters: &str) -> Option<Self> {
        let mut pipeline = Self::default();
        let mut rest = letters;
        for group in ['b', 'g', 'c'] {
            if let Some(after) = rest.strip_prefix(group) {
                rest = after;
                for t in Transform::ALL.into_iter().filter(|t| t.group() == group) {
                    pipeline = pipeline.with(t, 1.0);
                }
            }
        }
        (rest.is_empty() && !letters.is_empty()).then_some(pipeline)
    }

    /// Augments `images` with probability `p` per transform and sample; `p = 0` returns the
    /// input itself.
    pub fn apply(&self, images: &Tensor, p: f64) -> Tensor {
        if p <= 0.0 || self.multipliers.iter().all(|&m| m == 0.0) {
            return images.shallow_clone();
        }
        let (n, c, h, w) = images.size4().expect("images are [N, C, H, W]");
        assert!(c == 1 || c == 3, "ADA needs 1 or 3 channels, got {c}");
        assert!(h == w && h >= 2, "ADA needs square images, got {h}×{w}");
        let draws = Draws { n };
        let sampling = self.sampling_matrices(&draws, p, h);
        let images = if sampling.iter().all(|s| *s == identity()) {
            images.shallow_clone()
        } else if sampling.iter().all(is_pixel_blit) {
            blit(images, &sampling)
        } else {
            resample(images, &sampling)
        };
        let colour = self.colour_matrices(&draws, p);
        if colour.iter().all(|m| *m == identity()) {
            images
        } else {
            recolour(&images, &colour)
        }
    }

    fn probability(&self, transform: Transform, p: f64) -> f64 {
        let q = (p * self.multiplier(transform)).clamp(0.0, 1.0);
        // Two rotations, each with this probability, rotate a sample with probability q.
        if transform == Transform::Rotate {
            1.0 - (1.0 - q).sqrt()
        } else {
            q
        }
    }

    /// One parameter per sample from `values`, `None` where the transform is not applied.
    /// Nothing is drawn for a disabled transform.
    fn gated<X>(
        &self,
        transform: Transform,
        p: f64,
        draws: &Draws,
        values: impl FnOnce() -> Vec<X>,
    ) -> Vec<Option<X>> {
        let probability = self.probability(transform, p);
        if probability == 0.0 {
            return (0..draws.n).map(|_| None).collect();
        }
        let values = values();
        let gates = draws.uniform(0.0, 1.0);
        values
            .into_iter()
            .zip(gates)
            .map(|(v, u)| (u < probability).then_some(v))
            .collect()
    }

    /// Per sample, the matrix from centred output pixel coordinates to the centred input
    /// coordinates they read: each step right-multiplies the inverse of its transform, so the
    /// image undergoes the steps in order.
    fn sampling_matrices(&self, draws: &Draws, p: f64, size: i64) -> Vec<Mat<3>> {
        use Transform::*;
        let size = size as f64;
        let mut sampling = vec![identity::<3>(); draws.n as usize];
        let mut then = |inverses: Vec<Option<Mat<3>>>| {
            for (s, inverse) in sampling.iter_mut().zip(inverses) {
                if let Some(inverse) = inverse {
                    *s = matmul(s, &inverse);
                }
            }
        };
        let octaves =
            |std: f64| -> Vec<f64> { draws.normal(std).into_iter().map(f64::exp2).collect() };
        let shifts = |v: Vec<f64>| v.chunks(2).map(|t| [t[0], t[1]]).collect::<Vec<_>>();

        then(map(
            self.gated(XFlip, p, draws, || draws.integers(2)),
            |i| scale2(1.0 - 2.0 * i as f64, 1.0),
        ));
        then(map(
            self.gated(Rotate90, p, draws, || draws.integers(4)),
            |i| quarter_turn(-i),
        ));
        then(map(
            self.gated(XInt, p, draws, || shifts(draws.pairs_uniform(0.125))),
            |[tx, ty]| translate2(-(tx * size).round(), -(ty * size).round()),
        ));
        then(map(self.gated(Scale, p, draws, || octaves(0.2)), |s| {
            scale2(1.0 / s, 1.0 / s)
        }));
        let rotation = || draws.uniform(-std::f64::consts::PI, std::f64::consts::PI);
        then(map(self.gated(Rotate, p, draws, rotation), |t| rotate2(-t)));
        then(map(self.gated(Aniso, p, draws, || octaves(0.2)), |s| {
            scale2(1.0 / s, s)
        }));
        then(map(self.gated(Rotate, p, draws, rotation), |t| rotate2(-t)));
        then(map(
            self.gated(XFrac, p, draws, || shifts(draws.pairs_normal(0.125))),
            |[tx, ty]| translate2(-tx * size, -ty * size),
        ));
        sampling
    }

    /// Per sample, the colour matrix acting on (r, g, b, 1); each step left-multiplies.
    fn colour_matrices(&self, draws: &Draws, p: f64) -> Vec<Mat<4>> {
        use Transform::*;
        let mut colour = vec![identity::<4>(); draws.n as usize];
        let mut then = |steps: Vec<Option<Mat<4>>>| {
            for (c, step) in colour.iter_mut().zip(steps) {
                if let Some(step) = step {
                    *c = matmul(&step, c);
                }
            }
        };
        let octaves =
            |std: f64| -> Vec<f64> { draws.normal(std).into_iter().map(f64::exp2).collect() };
        // Luma-axis projector v·vᵀ in the colour part, v = (1, 1, 1)/√3.
        let luma = |k: f64| -> Mat<4> {
            let mut m = [[0.0; 4]; 4];
            for row in m.iter_mut().take(3) {
                row[..3].fill(k / 3.0);
            }
            m
        };
        let plus = |a: Mat<4>, b: Mat<4>| -> Mat<4> {
            std::array::from_fn(|i| std::array::from_fn(|j| a[i][j] + b[i][j]))
        };

        then(map(
            self.gated(Brightness, p, draws, || draws.normal(0.2)),
            |b| {
                let mut m = identity();
                (0..3).for_each(|i| m[i][3] = b);
                m
            },
        ));
        then(map(self.gated(Contrast, p, draws, || octaves(0.5)), |c| {
            colour_scale(c)
        }));
        then(map(
            self.gated(LumaFlip, p, draws, || draws.integers(2)),
            |i| plus(identity(), luma(-2.0 * i as f64)),
        ));
        let hue = || draws.uniform(-std::f64::consts::PI, std::f64::consts::PI);
        then(map(self.gated(Hue, p, draws, hue), hue_rotation));
        then(map(
            self.gated(Saturation, p, draws, || octaves(1.0)),
            |s| plus(luma(1.0 - s), colour_scale(s)),
        ));
        colour
    }
}

impl FromStr for AdaPipeline {
    type Err = anyhow::Error;
    fn from_str(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        if spec == "none" {
            return Ok(Self::default());
        }
        if let Some(pipeline) = Self::groups(spec) {
            return Ok(pipeline);
        }
        let mut pipeline = Self::default();
        for item in spec.split(',') {
            let (name, multiplier) = match item.trim().split_once('=') {
                Some((name, m)) => (
                    name.trim(),
                    m.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|m| m.is_finite() && *m >= 0.0)
                        .with_context(|| format!("bad multiplier in ADA spec item '{item}'"))?,
                ),
                None => (item.trim(), 1.0),
            };
            let Some(transform) = Transform::ALL.into_iter().find(|t| t.name() == name) else {
                let names: Vec<_> = Transform::ALL.iter().map(|t| t.name()).collect();
                bail!(
                    "unknown ADA transform '{name}' (expected none, group letters from 'bgc', or names from {})",
                    names.join(", ")
                );
            };
            pipeline = pipeline.with(transform, multiplier);
        }
        Ok(pipeline)
    }
}

impl fmt::Display for AdaPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = |t: &Transform| self.multiplier(*t) != 0.0;
        if !Transform::ALL.iter().any(on) {
            return write!(f, "none");
        }
        let letters: String = ['b', 'g', 'c']
            .into_iter()
            .filter(|g| Transform::ALL.iter().any(|t| t.group() == *g && on(t)))
            .collect();
        if Self::groups(&letters).as_ref() == Some(self) {
            return write!(f, "{letters}");
        }
        let items: Vec<String> = Transform::ALL
            .iter()
            .filter(|t| on(t))
            .map(|t| {
                let m = self.multiplier(*t);
                if m == 1.0 {
                    t.name().to_string()
                } else {
                    format!("{}={m}", t.name())
                }
            })
            .collect();
        write!(f, "{}", items.join(","))
    }
}

/// Random draws for a batch of `n`, on the CPU from libtorch's default generator.
struct Draws {
    n: i64,
}

impl Draws {
    fn uniform(&self, low: f64, high: f64) -> Vec<f64> {
        let u = Tensor::rand([self.n], (Kind::Double, Device::Cpu)) * (high - low) + low;
        Vec::try_from(u).unwrap()
    }

    fn normal(&self, std: f64) -> Vec<f64> {
        Vec::try_from(Tensor::randn([self.n], (Kind::Double, Device::Cpu)) * std).unwrap()
    }

    /// Two values per sample, U(-max, max), as a flat [x0, y0, x1, y1, ...].
    fn pairs_uniform(&self, max: f64) -> Vec<f64> {
        let u = Tensor::rand([self.n, 2], (Kind::Double, Device::Cpu)) * (2.0 * max) - max;
        Vec::try_from(u.flatten(0, -1)).unwrap()
    }

    /// Two values per sample, N(0, std²), as a flat [x0, y0, x1, y1, ...].
    fn pairs_normal(&self, std: f64) -> Vec<f64> {
        let t = Tensor::randn([self.n, 2], (Kind::Double, Device::Cpu)) * std;
        Vec::try_from(t.flatten(0, -1)).unwrap()
    }

    fn integers(&self, high: i64) -> Vec<i64> {
        Vec::try_from(Tensor::randint(high, [self.n], (Kind::Int64, Device::Cpu))).unwrap()
    }
}

type Mat<const D: usize> = [[f64; D]; D];

fn identity<const D: usize>() -> Mat<D> {
    std::array::from_fn(|i| std::array::from_fn(|j| f64::from(u8::from(i == j))))
}

fn matmul<const D: usize>(a: &Mat<D>, b: &Mat<D>) -> Mat<D> {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..D).map(|k| a[i][k] * b[k][j]).sum()))
}

fn map<X, Y>(params: Vec<Option<X>>, f: impl Fn(X) -> Y) -> Vec<Option<Y>> {
    params.into_iter().map(|x| x.map(&f)).collect()
}

fn scale2(sx: f64, sy: f64) -> Mat<3> {
    [[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]]
}

fn translate2(tx: f64, ty: f64) -> Mat<3> {
    [[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]]
}

fn rotate2(angle: f64) -> Mat<3> {
    let (sin, cos) = angle.sin_cos();
    [[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]]
}

/// Rotation by `quarters`·90° with exact entries (the trigonometric functions would leave
/// 6e-17 where zeros belong).
fn quarter_turn(quarters: i64) -> Mat<3> {
    let (cos, sin) =
        [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)][quarters.rem_euclid(4) as usize];
    [[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]]
}

/// A signed permutation with an integer shift: the matrix copies pixels.
fn is_pixel_blit(m: &Mat<3>) -> bool {
    let linear = [m[0][0], m[0][1], m[1][0], m[1][1]];
    linear.iter().all(|v| [-1.0, 0.0, 1.0].contains(v))
        && m[0][2].fract() == 0.0
        && m[1][2].fract() == 0.0
}

fn colour_scale(s: f64) -> Mat<4> {
    let mut m = identity();
    (0..3).for_each(|i| m[i][i] = s);
    m
}

/// Rotation by `angle` around the luma axis v = (1, 1, 1)/√3 (Rodrigues' formula:
/// cos·I + sin·[v]× + (1 - cos)·v·vᵀ).
fn hue_rotation(angle: f64) -> Mat<4> {
    let (sin, cos) = angle.sin_cos();
    let (a, b) = ((1.0 - cos) / 3.0, sin / 3f64.sqrt());
    [
        [cos + a, a - b, a + b, 0.0],
        [a + b, cos + a, a - b, 0.0],
        [a - b, a + b, cos + a, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// Symlet-6 low-pass decomposition filter (Daubechies' least-asymmetric wavelet with 6
/// vanishing moments, coefficients as PyWavelets lists them for `sym6`): sum √2, unit norm,
/// orthogonal to its own shifts by even numbers of taps.
const SYM6: [f64; 12] = [
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
];
const TAPS: i64 = SYM6.len() as i64;

/// The filter's centre, Σ k·h[k] / Σ h[k] (its group delay at DC), in taps.
fn filter_centre() -> f64 {
    let moment: f64 = SYM6.iter().enumerate().map(|(k, h)| k as f64 * h).sum();
    moment / SYM6.iter().sum::<f64>()
}

/// The filter as row and column kernels for a depthwise convolution over `planes` planes:
/// [planes, 1, 1, K] and [planes, 1, K, 1].
fn filter_kernels(planes: i64, kind: Kind, device: Device) -> (Tensor, Tensor) {
    let f = Tensor::from_slice(&SYM6).to_kind(kind).to_device(device);
    let f = f.reshape([1, 1, 1, TAPS]).repeat([planes, 1, 1, 1]);
    let column = f.reshape([planes, 1, TAPS, 1]);
    (f, column)
}

/// 2× upsampling of [1, P, H, W] by transposed convolution with the filter, separably: size
/// L → 2L + K - 2, input pixel i landing on the 2× grid at 2i + centre.
fn upsample(planes: &Tensor) -> Tensor {
    let p = planes.size()[1];
    let (row, column) = filter_kernels(p, planes.kind(), planes.device());
    planes
        .conv_transpose2d(&row, None::<Tensor>, [1, 2], [0, 0], [0, 0], p, [1, 1])
        .conv_transpose2d(&column, None::<Tensor>, [2, 1], [0, 0], [0, 0], p, [1, 1])
}

/// 2× downsampling of [1, P, H, W] by strided correlation with the filter, the adjoint of
/// `upsample` and, the filter being orthonormal, its left inverse: size 2L + K - 2 → L.
fn downsample(planes: &Tensor) -> Tensor {
    let p = planes.size()[1];
    let (row, column) = filter_kernels(p, planes.kind(), planes.device());
    planes
        .conv2d(&row, None::<Tensor>, [1, 2], [0, 0], [1, 1], p)
        .conv2d(&column, None::<Tensor>, [2, 1], [0, 0], [1, 1], p)
}

/// For each sample's affine map in `maps` (rows (a, b, t) for x and for y), the source
/// coordinates `a·x + b·y + t` of every point (x, y) of an `h`×`w` index grid, row-major, as
/// two [N, h·w] float tensors.
fn source_coordinates(maps: &[[[f64; 3]; 2]], h: i64, w: i64, device: Device) -> (Tensor, Tensor) {
    let n = maps.len() as i64;
    let flat: Vec<f64> = maps.iter().flatten().flatten().copied().collect();
    let m = Tensor::from_slice(&flat)
        .reshape([n, 2, 3, 1])
        .permute([1, 2, 0, 3])
        .to_kind(Kind::Float)
        .to_device(device);
    let xs = Tensor::arange(w, (Kind::Float, device)).repeat([h]);
    let ys = Tensor::arange(h, (Kind::Float, device))
        .unsqueeze(1)
        .expand([h, w], false)
        .reshape([h * w]);
    let coordinate = |row: i64| {
        let m = m.select(0, row);
        m.select(0, 0) * &xs + m.select(0, 1) * &ys + m.select(0, 2)
    };
    (coordinate(0), coordinate(1))
}

/// The matrix `s` (centred pixel coordinates, output → input) as a map from output to input
/// grid indices. A grid is (step, origin): index = step·(pixel position + origin), the pixel
/// position of pixel i being i; the input grid is given per axis.
fn index_map(s: &Mat<3>, half: f64, out: (f64, f64), input: [(f64, f64); 2]) -> [[f64; 3]; 2] {
    let (out_step, out_origin) = out;
    // Output index → centred output position.
    let to_centred = [
        [1.0 / out_step, 0.0, -out_origin - half],
        [0.0, 1.0 / out_step, -out_origin - half],
        [0.0, 0.0, 1.0],
    ];
    // Centred input position → input index, per axis.
    let (in_step_x, in_origin_x) = input[0];
    let (in_step_y, in_origin_y) = input[1];
    let to_index = [
        [in_step_x, 0.0, in_step_x * (half + in_origin_x)],
        [0.0, in_step_y, in_step_y * (half + in_origin_y)],
        [0.0, 0.0, 1.0],
    ];
    let m = matmul(&to_index, &matmul(s, &to_centred));
    [m[0], m[1]]
}

/// Reflection of integer indices into [0, len): …, 2, 1, 0, 1, 2, …, len - 1, len - 2, ….
fn reflect(i: &Tensor, len: i64) -> Tensor {
    let period = 2 * (len - 1);
    let m = i.remainder(period);
    m.minimum(&(-&m + period))
}

/// Copies pixels for matrices that are pixel blits, reflecting at the borders.
fn blit(images: &Tensor, sampling: &[Mat<3>]) -> Tensor {
    let (n, c, size, _) = images.size4().unwrap();
    let half = (size - 1) as f64 / 2.0;
    let maps: Vec<_> = sampling
        .iter()
        .map(|s| index_map(s, half, (1.0, 0.0), [(1.0, 0.0); 2]))
        .collect();
    let (xs, ys) = source_coordinates(&maps, size, size, images.device());
    let index = |v: Tensor| reflect(&v.round().to_kind(Kind::Int64), size);
    let flat = (index(ys) * size + index(xs)).unsqueeze(1);
    images
        .reshape([n, c, size * size])
        .gather(2, &flat.expand([n, c, size * size], false), false)
        .reshape([n, c, size, size])
}

/// Resamples every image through its matrix: reflect-pad, upsample 2×, bilinear sampling on
/// the 2× grid, downsample 2×.
fn resample(images: &Tensor, sampling: &[Mat<3>]) -> Tensor {
    let (n, c, size, _) = images.size4().unwrap();
    let centre = filter_centre();
    let half = (size - 1) as f64 / 2.0;
    // The output 2× grid: index i at pixel position (i - centre)/2, so that `downsample`
    // centres output pixel k on 2k + centre.
    let grid = 2 * size + TAPS - 2;
    let grid_ends = [-centre / 2.0, (grid - 1) as f64 / 2.0 - centre / 2.0];
    // The input pixels each axis reads: the corners' images, widened by half a pixel for
    // the bilinear taps and by the filter's support around a 2× sample, i - (K - 1 - centre)/2
    // ..= i + centre/2.
    let (mut low, mut high) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for s in sampling {
        for x in grid_ends {
            for y in grid_ends {
                let (cx, cy) = (x - half, y - half);
                let source = [
                    s[0][0] * cx + s[0][1] * cy + s[0][2],
                    s[1][0] * cx + s[1][1] * cy + s[1][2],
                ];
                for axis in 0..2 {
                    low[axis] = low[axis].min(source[axis] + half);
                    high[axis] = high[axis].max(source[axis] + half);
                }
            }
        }
    }
    let before = 0.5 + (TAPS as f64 - 1.0 - centre) / 2.0;
    let after = 0.5 + centre / 2.0;
    let clamp = |need: f64| (need.ceil().max(0.0) as i64).min(size - 1);
    let pads: [(i64, i64); 2] = std::array::from_fn(|axis| {
        (
            clamp(before - low[axis]),
            clamp(high[axis] + after - (size - 1) as f64),
        )
    });
    let [(left, right), (top, bottom)] = pads;
    // Reflection as far as needed, then one ring of zeros: it zeroes the two outermost samples
    // of the 2× grid on each side, where the sampler's clamped indices read beyond the padding.
    // The filters run as one depthwise convolution over all N·C planes.
    let padded = images
        .reflection_pad2d([left, right, top, bottom])
        .constant_pad_nd([1, 1, 1, 1])
        .reshape([1, n * c, size + top + bottom + 2, size + left + right + 2]);
    let upsampled = upsample(&padded);
    // Input 2× grid: pixel position x (of the unpadded image) at index 2·(x + pad + 1) + centre.
    let input = [
        (2.0, (left + 1) as f64 + centre / 2.0),
        (2.0, (top + 1) as f64 + centre / 2.0),
    ];
    let maps: Vec<_> = sampling
        .iter()
        .map(|s| index_map(s, half, (2.0, centre / 2.0), input))
        .collect();
    let (xs, ys) = source_coordinates(&maps, grid, grid, images.device());
    let (_, _, h, w) = upsampled.size4().unwrap();
    let sampled = bilinear(&upsampled.reshape([n, c, h, w]), &xs, &ys);
    downsample(&sampled.reshape([1, n * c, grid, grid])).reshape([n, c, size, size])
}

/// Bilinear sampling of `images` [N, C, H, W] at fractional indices `xs`, `ys` ([N, P]),
/// clamped into the image; the result is [N, C, P]. Gathers, unlike `grid_sample`, have
/// gradients of every order.
fn bilinear(images: &Tensor, xs: &Tensor, ys: &Tensor) -> Tensor {
    let (n, c, h, w) = images.size4().unwrap();
    let points = xs.size()[1];
    let pixels = images.reshape([n, c, h * w]);
    // The first of the two taps along an axis, and the weight of the second.
    let first_tap = |v: &Tensor, len: i64| {
        let v = v.clamp(0.0, (len - 1) as f64);
        let first = v.floor().clamp_max((len - 2) as f64);
        let weight = (&v - &first).to_kind(images.kind()).unsqueeze(1);
        (first.to_kind(Kind::Int64), weight)
    };
    let (x0, fx) = first_tap(xs, w);
    let (y0, fy) = first_tap(ys, h);
    let tap = |dy: i64, dx: i64| {
        let index = (&y0 + dy) * w + &x0 + dx;
        pixels.gather(2, &index.unsqueeze(1).expand([n, c, points], false), false)
    };
    let upper = tap(0, 0).lerp_tensor(&tap(0, 1), &fx);
    let lower = tap(1, 0).lerp_tensor(&tap(1, 1), &fx);
    upper.lerp_tensor(&lower, &fy)
}

/// Applies each sample's colour matrix to its (r, g, b, 1); a grey image as (g, g, g), the
/// three results averaged.
fn recolour(images: &Tensor, colour: &[Mat<4>]) -> Tensor {
    let (n, c, h, w) = images.size4().unwrap();
    let (kind, device) = (images.kind(), images.device());
    let tensor = |v: Vec<f64>, shape: &[i64]| {
        Tensor::from_slice(&v)
            .reshape(shape)
            .to_kind(kind)
            .to_device(device)
    };
    if c == 1 {
        let gain = colour
            .iter()
            .map(|m| (0..3).map(|i| m[i][..3].iter().sum::<f64>()).sum::<f64>() / 3.0);
        let offset = colour
            .iter()
            .map(|m| (0..3).map(|i| m[i][3]).sum::<f64>() / 3.0);
        return images * tensor(gain.collect(), &[n, 1, 1, 1])
            + tensor(offset.collect(), &[n, 1, 1, 1]);
    }
    let linear = colour
        .iter()
        .flat_map(|m| (0..3).flat_map(move |i| m[i][..3].to_vec()));
    let offset = colour.iter().flat_map(|m| (0..3).map(move |i| m[i][3]));
    let pixels = images.reshape([n, 3, h * w]);
    (tensor(linear.collect(), &[n, 3, 3]).bmm(&pixels) + tensor(offset.collect(), &[n, 3, 1]))
        .reshape([n, c, h, w])
}
