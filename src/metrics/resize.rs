//! The two ways images reach the Inception's 299×299 input, each reproducing its reference.
//!
//! * [`Mode::Clean`] (clean-fid's default): every channel, as float32, resized with PIL's
//!   antialiased bicubic filter (`Image.fromarray(ch, mode='F').resize((299, 299), BICUBIC)`),
//!   then clipped to [0, 255] and not re-quantised. PIL resamples each axis with normalised
//!   weights `bicubic((i − centre + ½) / s)` (a = −0.5, support 2·s, s = max(in/out, 1)), the
//!   horizontal pass first, accumulating in f64 and storing each pass as f32. Here each pass is a
//!   product with the axis' weight matrix, in f64, rounded to f32 in between as PIL does.
//! * [`Mode::LegacyTf`] (StyleGAN2-ADA, torch-fidelity, clean-fid's `legacy_tensorflow`): TF1
//!   `resize_bilinear` without half-pixel centres (source pixel `j · in / 299`, clamped at the
//!   border), done the way NVIDIA's TorchScript archive does it: `affine_grid` with a shifted
//!   identity, then `grid_sample` (bilinear, border, `align_corners=False`), in float32.
use anyhow::{bail, ensure, Result};
use tch::{Kind, Tensor};

/// The Inception's input side.
pub const INCEPTION_SIZE: i64 = 299;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Clean,
    LegacyTf,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Clean => "clean",
            Mode::LegacyTf => "legacy-tf",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "clean" => Ok(Mode::Clean),
            "legacy-tf" | "legacy_tensorflow" => Ok(Mode::LegacyTf),
            _ => bail!("--mode {s}: expected clean or legacy-tf"),
        }
    }
}

/// PIL's bicubic kernel (a = −0.5).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// PIL's resampling weights for one axis (`precompute_coeffs` with the bicubic filter), as a
/// row-major `[output, input]` matrix.
fn pil_bicubic_weights(input: usize, output: usize) -> Vec<f64> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    let mut weights = vec![0.0; output * input];
    for (out, row) in weights.chunks_exact_mut(input).enumerate() {
        let centre = (out as f64 + 0.5) * scale;
        // C's (int) casts: truncation toward zero.
        let first = ((centre - support + 0.5) as i64).max(0) as usize;
        let end = ((centre + support + 0.5) as i64).min(input as i64) as usize;
        let taps = &mut row[first..end];
        for (k, w) in taps.iter_mut().enumerate() {
            *w = bicubic(((first + k) as f64 - centre + 0.5) / filter_scale);
        }
        let total: f64 = taps.iter().sum();
        if total != 0.0 {
            taps.iter_mut().for_each(|w| *w /= total);
        }
    }
    weights
}

fn weight_matrix(input: i64, output: i64, device: tch::Device) -> Tensor {
    Tensor::from_slice(&pil_bicubic_weights(input as usize, output as usize))
        .view([output, input])
        .to_device(device)
}

/// float32 `[N, C, H, W]` → float32 `[N, C, size, size]`, PIL's bicubic per channel, clipped.
fn pil_bicubic(x: &Tensor, size: i64) -> Tensor {
    let (_, _, h, w) = x.size4().unwrap();
    let horizontal = x
        .to_kind(Kind::Double)
        .matmul(&weight_matrix(w, size, x.device()).tr())
        .to_kind(Kind::Float);
    weight_matrix(h, size, x.device())
        .matmul(&horizontal.to_kind(Kind::Double))
        .to_kind(Kind::Float)
        .clamp(0.0, 255.0)
}

/// float32 `[N, C, H, W]` → float32 `[N, C, size, size]`: NVIDIA's TF1-bilinear `grid_sample`.
fn tf1_bilinear(x: &Tensor, size: i64) -> Tensor {
    let (n, c, h, w) = x.size4().unwrap();
    // The archive's theta: identity, translated by 1/in − 1/out in normalised coordinates
    // (computed in float32 like its tensor arithmetic).
    let shift = |len: i64| 1.0f32 / len as f32 - 1.0f32 / size as f32;
    let theta = Tensor::from_slice(&[1.0f32, 0.0, shift(w), 0.0, 1.0, shift(h)])
        .view([1, 2, 3])
        .repeat([n, 1, 1])
        .to_device(x.device());
    let grid = Tensor::affine_grid_generator(&theta, [n, c, size, size], false);
    // Interpolation 0 = bilinear, padding 1 = border.
    x.grid_sampler(&grid, 0, 1, false)
}

/// uint8 (or 0..255 float) images `[N, 1 or 3, H, W]` → float32 `[N, 3, size, size]` in 0..255,
/// resized as `mode` prescribes; grey images are repeated to three channels (after resizing,
/// which treats every channel alike).
pub fn resize(images: &Tensor, mode: Mode, size: i64) -> Result<Tensor> {
    let (n, c, h, w) = images.size4()?;
    ensure!(
        c == 1 || c == 3,
        "images with {c} channels: expected 1 (grey) or 3 (RGB)"
    );
    ensure!(h > 0 && w > 0, "empty images ({h}×{w})");
    let x = images.to_kind(Kind::Float);
    let resized = match mode {
        Mode::Clean => pil_bicubic(&x, size),
        Mode::LegacyTf => tf1_bilinear(&x, size),
    };
    Ok(resized.expand([n, 3, size, size], false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_weights_are_normalised_and_identity_at_scale_one() {
        for (input, output) in [(37, 299), (410, 299), (7, 3), (299, 299)] {
            let w = pil_bicubic_weights(input, output);
            for row in w.chunks_exact(input) {
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
            if input == output {
                for (i, row) in w.chunks_exact(input).enumerate() {
                    assert_eq!(row[i], 1.0);
                    assert_eq!(row.iter().filter(|&&v| v != 0.0).count(), 1);
                }
            }
        }
    }

    #[test]
    fn modes_parse_and_print() {
        for m in [Mode::Clean, Mode::LegacyTf] {
            assert_eq!(m.name().parse::<Mode>().unwrap(), m);
        }
        assert!("bilinear".parse::<Mode>().is_err());
    }
}
