//! DiffAugment (Zhao et al. 2020): differentiable colour, translation and cutout, drawn
//! independently per sample and applied to every image the discriminator sees, real or fake,
//! in both the D and the G step. Semantics follow the reference implementation:
//! - colour: brightness + U(-0.5, 0.5); saturation (x - mean_c)·U(0, 2) + mean_c;
//!   contrast (x - mean_chw)·U(0.5, 1.5) + mean_chw, in that order;
//! - translation: integer shifts in [-s, s], s = round(size/8), pixels from outside are 0;
//! - cutout: one square of side round(size/2) set to 0, centre uniform, clipped at the borders.
use anyhow::{bail, Result};
use std::fmt;
use std::str::FromStr;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Color,
    Translation,
    Cutout,
}

/// An ordered list of DiffAugment operations, parsed from e.g. `color,translation,cutout`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy(pub Vec<Op>);

impl FromStr for Policy {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.is_empty() || s == "none" {
            return Ok(Policy(vec![]));
        }
        s.split(',')
            .map(|p| match p.trim() {
                "color" => Ok(Op::Color),
                "translation" => Ok(Op::Translation),
                "cutout" => Ok(Op::Cutout),
                other => bail!("unknown DiffAugment operation '{other}' (expected color, translation, cutout or none)"),
            })
            .collect::<Result<_>>()
            .map(Policy)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "none");
        }
        let names: Vec<&str> = self
            .0
            .iter()
            .map(|op| match op {
                Op::Color => "color",
                Op::Translation => "translation",
                Op::Cutout => "cutout",
            })
            .collect();
        write!(f, "{}", names.join(","))
    }
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn apply(&self, x: &Tensor) -> Tensor {
        let mut x = x.shallow_clone();
        for op in &self.0 {
            x = match op {
                Op::Color => color(&x),
                Op::Translation => translation(&x, 0.125),
                Op::Cutout => cutout(&x, 0.5),
            };
        }
        x
    }
}

fn per_sample_uniform(x: &Tensor) -> Tensor {
    Tensor::rand([x.size()[0], 1, 1, 1], (x.kind(), x.device()))
}

pub fn color(x: &Tensor) -> Tensor {
    let x = x + (per_sample_uniform(x) - 0.5);
    let m = x.mean_dim(1, true, None::<Kind>);
    let x = (&x - &m) * (per_sample_uniform(&x) * 2.0) + &m;
    let m = x.mean_dim(&[1i64, 2, 3][..], true, None::<Kind>);
    (&x - &m) * (per_sample_uniform(&x) + 0.5) + &m
}

/// `size · ratio`, rounded half up as the reference does.
fn scaled(size: i64, ratio: f64) -> i64 {
    (size as f64 * ratio + 0.5) as i64
}

/// Integer shifts in [-max, max] per sample, as an [N] int64 tensor.
fn shifts(n: i64, max: i64, device: Device) -> Tensor {
    Tensor::randint_low(-max, max + 1, [n], (Kind::Int64, device))
}

pub fn translation(x: &Tensor, ratio: f64) -> Tensor {
    let (n, c, h, w) = x.size4().unwrap();
    let dev = x.device();
    let (sh, sw) = (scaled(h, ratio), scaled(w, ratio));
    let (ty, tx) = (shifts(n, sh, dev), shifts(n, sw, dev));
    // Pad by one zero pixel and clamp the source index into the padded image: every pixel that
    // comes from outside reads a zero.
    let padded = x.constant_pad_nd([1, 1, 1, 1]);
    let rows =
        (Tensor::arange(h, (Kind::Int64, dev)).unsqueeze(0) + ty.unsqueeze(1) + 1).clamp(0, h + 1); // [N, H]
    let cols =
        (Tensor::arange(w, (Kind::Int64, dev)).unsqueeze(0) + tx.unsqueeze(1) + 1).clamp(0, w + 1); // [N, W]
    let rows = rows.reshape([n, 1, h, 1]).expand([n, c, h, w + 2], false);
    let y = padded.gather(2, &rows, false);
    let cols = cols.reshape([n, 1, 1, w]).expand([n, c, h, w], false);
    y.gather(3, &cols, false)
}

pub fn cutout(x: &Tensor, ratio: f64) -> Tensor {
    let (n, _, h, w) = x.size4().unwrap();
    let dev = x.device();
    let (sh, sw) = (scaled(h, ratio), scaled(w, ratio));
    let cy = Tensor::randint_low(0, h + (1 - sh % 2), [n, 1], (Kind::Int64, dev));
    let cx = Tensor::randint_low(0, w + (1 - sw % 2), [n, 1], (Kind::Int64, dev));
    let (y0, x0) = (cy - sh / 2, cx - sw / 2);
    let r = Tensor::arange(h, (Kind::Int64, dev)).unsqueeze(0); // [1, H]
    let c = Tensor::arange(w, (Kind::Int64, dev)).unsqueeze(0);
    let in_rows = r.ge_tensor(&y0).logical_and(&r.lt_tensor(&(&y0 + sh))); // [N, H]
    let in_cols = c.ge_tensor(&x0).logical_and(&c.lt_tensor(&(&x0 + sw))); // [N, W]
    let hole = in_rows.unsqueeze(2).logical_and(&in_cols.unsqueeze(1)); // [N, H, W]
    let keep = hole.logical_not().to_kind(x.kind()).unsqueeze(1);
    x * keep
}
