//! The six loss types of the vision-aided discriminator (reference §3).
//!
//! With `BCE(l, t) = max(l, 0) − l·t + log(1 + e^{−|l|})`:
//! - the target is α for real images **and** for the generator step, 0 for fakes in the D step;
//!   α = 1, or 0.8 for the `_s` (label-smoothed) variants, so with `_s` the generator's optimum
//!   logit is ln 4, not +∞;
//! - `sigmoid`/`sigmoid_s` return per-sample losses `[B, 1]`, not reduced (the caller adds them
//!   to the base GAN's per-sample loss and takes the mean);
//! - `multilevel_*` average each level over its non-batch dimensions and **sum** the levels;
//! - `hinge`/`multilevel_hinge` return scalars.
use anyhow::{bail, Result};
use std::fmt;
use std::str::FromStr;
use tch::{Kind, Tensor};

/// Which side of the game the loss is computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Real images in the discriminator step.
    Real,
    /// Generated images in the discriminator step.
    Fake,
    /// Generated images in the generator step (same target as `Real`).
    Generator,
}

/// One loss type, by its reference name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossType {
    Sigmoid,
    SigmoidS,
    MultilevelSigmoid,
    MultilevelSigmoidS,
    Hinge,
    MultilevelHinge,
}

/// The label-smoothing target of the `_s` variants.
pub const SMOOTH_TARGET: f64 = 0.8;

impl LossType {
    pub const ALL: [LossType; 6] = [
        LossType::Sigmoid,
        LossType::SigmoidS,
        LossType::MultilevelSigmoid,
        LossType::MultilevelSigmoidS,
        LossType::Hinge,
        LossType::MultilevelHinge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LossType::Sigmoid => "sigmoid",
            LossType::SigmoidS => "sigmoid_s",
            LossType::MultilevelSigmoid => "multilevel_sigmoid",
            LossType::MultilevelSigmoidS => "multilevel_sigmoid_s",
            LossType::Hinge => "hinge",
            LossType::MultilevelHinge => "multilevel_hinge",
        }
    }

    /// Whether the loss takes a list of levels (a multi-level head's output).
    pub fn is_multilevel(self) -> bool {
        matches!(
            self,
            LossType::MultilevelSigmoid | LossType::MultilevelSigmoidS | LossType::MultilevelHinge
        )
    }

    /// Whether the loss returns a scalar (hinge types) rather than per-sample `[B, 1]`.
    pub fn is_scalar(self) -> bool {
        matches!(self, LossType::Hinge | LossType::MultilevelHinge)
    }

    /// The BCE target for the real/generator side: 1, or 0.8 for the `_s` variants.
    /// `None` for the hinge types.
    pub fn positive_target(self) -> Option<f64> {
        match self {
            LossType::Sigmoid | LossType::MultilevelSigmoid => Some(1.0),
            LossType::SigmoidS | LossType::MultilevelSigmoidS => Some(SMOOTH_TARGET),
            LossType::Hinge | LossType::MultilevelHinge => None,
        }
    }

    /// The loss of one head's output. `logits` is the head's list of outputs: exactly one
    /// tensor for the single-level types, one per level for the `multilevel_*` types.
    ///
    /// Panics if a single-level type is given more than one tensor or the list is empty.
    pub fn loss(self, logits: &[Tensor], target: Target) -> Tensor {
        assert!(!logits.is_empty(), "{}: no logits given", self.name());
        if !self.is_multilevel() {
            assert!(
                logits.len() == 1,
                "{} takes one logits tensor, got {} levels (use multilevel_{} for a multi-level head)",
                self.name(),
                logits.len(),
                self.name()
            );
        }
        match self.positive_target() {
            Some(alpha) => {
                let t = match target {
                    Target::Real | Target::Generator => alpha,
                    Target::Fake => 0.0,
                };
                let mut levels = logits
                    .iter()
                    .map(|l| per_sample_mean(&bce_with_logits(l, t)));
                let first = levels.next().unwrap();
                levels.fold(first, |acc, x| acc + x)
            }
            None => {
                let mut levels = logits.iter().map(|l| match target {
                    Target::Real => (-l + 1.0).relu().mean(None::<Kind>),
                    Target::Fake => (l + 1.0).relu().mean(None::<Kind>),
                    Target::Generator => -l.mean(None::<Kind>),
                });
                let first = levels.next().unwrap();
                levels.fold(first, |acc, x| acc + x)
            }
        }
    }
}

impl fmt::Display for LossType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LossType {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        match LossType::ALL.iter().find(|t| t.name() == s) {
            Some(t) => Ok(*t),
            None => {
                let known: Vec<&str> = LossType::ALL.iter().map(|t| t.name()).collect();
                bail!(
                    "unknown vision-aided loss type '{s}' (known: {})",
                    known.join(", ")
                )
            }
        }
    }
}

/// Parses a '+'-joined list of loss types, one per network of the ensemble
/// (e.g. `multilevel_sigmoid_s+sigmoid`).
pub fn parse_loss_types(s: &str) -> Result<Vec<LossType>> {
    if s.trim().is_empty() {
        bail!("empty vision-aided loss type list");
    }
    s.split('+').map(LossType::from_str).collect()
}

/// Elementwise binary cross-entropy with logits against a constant target `t`, written stably:
/// `max(l, 0) − l·t + log(1 + e^{−|l|})`.
pub fn bce_with_logits(logits: &Tensor, t: f64) -> Tensor {
    logits.clamp_min(0.0) - logits * t + (-logits.abs()).exp().log1p()
}

/// Mean over every non-batch dimension, as `[B, 1]`: a `[B, 1]` logit stays as is, a `[B, H, W]`
/// map is averaged spatially.
fn per_sample_mean(x: &Tensor) -> Tensor {
    let b = x.size()[0];
    x.reshape([b, -1]).mean_dim(&[1i64][..], true, None::<Kind>)
}

/// The ensemble loss: loss `i` applied to network `i`'s head outputs, summed over the networks
/// without weights. Per-sample `[B, 1]` and scalar losses add by broadcasting.
pub fn ensemble_loss(
    types: &[LossType],
    outputs: &[Vec<Tensor>],
    target: Target,
) -> Result<Tensor> {
    if types.len() != outputs.len() {
        bail!(
            "{} loss types for {} vision-aided networks",
            types.len(),
            outputs.len()
        );
    }
    let mut total: Option<Tensor> = None;
    for (ty, out) in types.iter().zip(outputs) {
        if out.is_empty() || (!ty.is_multilevel() && out.len() != 1) {
            bail!(
                "loss type {ty} does not fit a head with {} outputs",
                out.len()
            );
        }
        let l = ty.loss(out, target);
        total = Some(match total {
            Some(t) => t + l,
            None => l,
        });
    }
    total.ok_or_else(|| anyhow::anyhow!("no vision-aided networks"))
}
