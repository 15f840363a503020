//! The ensemble (reference §2.3, §4, §5): every network sees its own independently augmented
//! copy of the images at the generator's resolution (before the backbone's resize), its frozen
//! backbone gives features, its head gives logits, its loss type turns them into a loss, and
//! the losses are summed over the networks without weights.
//!
//! ```
//! use tch::nn::{self, Module, OptimizerConfig};
//! use tch::{Device, Kind, Tensor};
//! use vagan::vision_aided::{Discriminator, Target};
//! use vagan::weights::cache::Cache;
//!
//! # fn main() -> anyhow::Result<()> {
//! let device = Device::Cpu;
//! // A toy generator: 8-d latent → 3×16×16 image in [-1, 1].
//! let vs_g = nn::VarStore::new(device);
//! let g = nn::seq()
//!     .add(nn::linear(vs_g.root() / "fc", 8, 3 * 16 * 16, Default::default()))
//!     .add_fn(|x| x.tanh().view([-1, 3, 16, 16]));
//! let adam = nn::Adam { beta1: 0.0, beta2: 0.99, ..Default::default() };
//! let mut opt_g = adam.build(&vs_g, 2e-3)?;
//!
//! // EfficientNet-Lite0 (`vagan weights fetch efficientnet_lite0`) with its head and the
//! // label-smoothed sigmoid loss; DiffAugment per network is the default.
//! let mut d = Discriminator::builder("efficientnet_lite0", "sigmoid_s")
//!     .device(device)
//!     .build(&Cache::open_default()?)?;
//! let mut opt_d = adam.build(d.heads(), 2e-3)?;
//!
//! let real = Tensor::rand([4, 3, 16, 16], (Kind::Float, device)) * 2.0 - 1.0;
//! for _ in 0..2 {
//!     // Discriminator step: the backbone runs without gradients, only the heads learn.
//!     let fake = tch::no_grad(|| g.forward(&Tensor::randn([4, 8], (Kind::Float, device))));
//!     let loss_d = d.loss(&real, Target::Real)? + d.loss(&fake, Target::Fake)?;
//!     opt_d.backward_step(&loss_d);
//!     // Generator step: the gradient flows through the frozen backbone into the generator.
//!     let fake = g.forward(&Tensor::randn([4, 8], (Kind::Float, device)));
//!     let loss_g = d.loss(&fake, Target::Generator)?;
//!     opt_g.backward_step(&loss_g);
//!     assert!(loss_d.double_value(&[]).is_finite() && loss_g.double_value(&[]).is_finite());
//! }
//! # Ok(())
//! # }
//! ```
use super::heads::{Head, HeadConfig, HeadVariant};
use super::losses::{parse_loss_types, LossType, Target};
use crate::augment::{AdaPipeline, Policy};
use crate::backbones::bank::Backbone;
use crate::weights::cache::Cache;
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// ADA's speed: p can move by 1 over this many thousand images.
pub const ADA_KIMG: f64 = 500.0;
/// ADA adjusts p every this many minibatches.
pub const ADA_INTERVAL: u64 = 4;
/// The reference's ADA target for the vision-aided heads (`--ada-target-cv`).
pub const ADA_TARGET: f64 = 0.3;

/// How the images are augmented before each network, drawn independently per network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Augment {
    /// The raw images.
    None,
    /// DiffAugment with this policy (the reference: `color,translation,cutout`).
    DiffAugment { policy: String },
    /// ADA with its own probability p per network, tuned toward `target` on the sign of the
    /// last-level real logits, then cutout (always on, as in the reference).
    Ada { pipeline: String, target: f64 },
}

impl Augment {
    pub fn diffaugment() -> Self {
        Augment::DiffAugment {
            policy: "color,translation,cutout".into(),
        }
    }

    pub fn ada(target: f64) -> Self {
        Augment::Ada {
            pipeline: "bgc".into(),
            target,
        }
    }
}

impl Default for Augment {
    fn default() -> Self {
        Augment::diffaugment()
    }
}

/// `none`, `diffaug` (or `diffaug:<policy>`), `ada` (or `ada:<pipeline>`, target 0.3).
impl FromStr for Augment {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        let a = match (kind, arg) {
            ("none", "") => Augment::None,
            ("diffaug", "") => Augment::diffaugment(),
            ("diffaug", policy) => Augment::DiffAugment {
                policy: policy.to_string(),
            },
            ("ada", "") => Augment::ada(ADA_TARGET),
            ("ada", pipeline) => Augment::Ada {
                pipeline: pipeline.to_string(),
                target: ADA_TARGET,
            },
            _ => bail!(
                "unknown augmentation '{s}' (expected none, diffaug[:POLICY] or ada[:PIPELINE])"
            ),
        };
        Augmenter::new(&a)?;
        Ok(a)
    }
}

impl fmt::Display for Augment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Augment::None => write!(f, "none"),
            Augment::DiffAugment { policy } => write!(f, "diffaug:{policy}"),
            Augment::Ada { pipeline, target } => write!(f, "ada:{pipeline} (target {target})"),
        }
    }
}

/// [`Augment`] with its policy or pipeline parsed.
enum Augmenter {
    None,
    DiffAugment(Policy),
    Ada {
        pipeline: AdaPipeline,
        cutout: Policy,
        target: f64,
    },
}

impl Augmenter {
    fn new(a: &Augment) -> Result<Self> {
        Ok(match a {
            Augment::None => Augmenter::None,
            Augment::DiffAugment { policy } => Augmenter::DiffAugment(policy.parse()?),
            Augment::Ada { pipeline, target } => {
                ensure!(
                    (0.0..=1.0).contains(target),
                    "ADA target {target}: must be in [0, 1]"
                );
                Augmenter::Ada {
                    pipeline: pipeline.parse()?,
                    cutout: "cutout".parse()?,
                    target: *target,
                }
            }
        })
    }

    fn apply(&self, images: &Tensor, ada_p: f64) -> Tensor {
        match self {
            Augmenter::None => images.shallow_clone(),
            Augmenter::DiffAugment(policy) => policy.apply(images),
            Augmenter::Ada {
                pipeline, cutout, ..
            } => cutout.apply(&pipeline.apply(images, ada_p)),
        }
    }
}

/// What a snapshot keeps of a network besides its head weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberState {
    pub name: String,
    pub loss: String,
    /// The ADA probability, and the sum and count of the real-logit signs since its last update.
    pub ada_p: f64,
    pub ada_sign_sum: f64,
    pub ada_sign_count: u64,
}

/// One network of the ensemble.
pub struct Member {
    pub backbone: Backbone,
    pub head: Head,
    pub loss: LossType,
    pub ada_p: f64,
    ada_sign_sum: f64,
    ada_sign_count: u64,
}

impl Member {
    pub fn name(&self) -> &'static str {
        self.backbone.name
    }
}

/// The vision-aided discriminator. Build it with [`Discriminator::builder`]; train
/// [`Discriminator::heads`] with any optimiser; call [`Discriminator::loss`] with real images
/// and fakes in the discriminator step and with fakes in the generator step.
pub struct Discriminator {
    vs: VarStore,
    members: Vec<Member>,
    head_cfg: HeadConfig,
    augment: Augment,
    augmenter: Augmenter,
}

/// Where the builder takes its backbones from.
enum Backbones<'a> {
    Cache(&'a Cache),
    TinyRandom,
}

/// Builds a [`Discriminator`] from a bank spec (`efficientnet_lite0+clip_vit_b32`) and a loss
/// spec (`sigmoid_s+multilevel_sigmoid_s`, one per network).
pub struct DiscriminatorBuilder {
    bank: String,
    losses: String,
    head: HeadConfig,
    augment: Augment,
    device: Device,
    head_seed: Option<u64>,
}

impl DiscriminatorBuilder {
    pub fn head_variant(mut self, variant: HeadVariant) -> Self {
        self.head.variant = variant;
        self
    }

    /// A class-projection term in every head, for labels in `0..num_classes`.
    pub fn num_classes(mut self, num_classes: i64) -> Self {
        self.head.num_classes = num_classes;
        self
    }

    pub fn augment(mut self, augment: Augment) -> Self {
        self.augment = augment;
        self
    }

    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Draws the head of the network at position i from libtorch's generator seeded with
    /// `derive_seed(seed, u64::MAX - 1 - i)` rather than from its current state, so that an
    /// ensemble extended later gives the new network the head a fresh build would have.
    pub fn head_seed(mut self, seed: u64) -> Self {
        self.head_seed = Some(seed);
        self
    }

    /// With the backbones' weights from the cache (`vagan weights fetch|import`).
    pub fn build(self, cache: &Cache) -> Result<Discriminator> {
        self.build_from(Backbones::Cache(cache))
    }

    /// With tiny random backbones of the same architectures: for tests of code built on it.
    pub fn build_tiny_random(self) -> Result<Discriminator> {
        self.build_from(Backbones::TinyRandom)
    }

    fn build_from(self, source: Backbones) -> Result<Discriminator> {
        let names: Vec<&str> = self.bank.split('+').map(str::trim).collect();
        let losses = parse_loss_types(&self.losses)?;
        ensure!(
            names.len() == losses.len(),
            "{} networks ({}) but {} loss types ({})",
            names.len(),
            self.bank,
            losses.len(),
            self.losses
        );
        let mut d = Discriminator::new(self.head, self.augment, self.device)?;
        for (i, (name, loss)) in names.iter().zip(losses).enumerate() {
            let backbone = match source {
                Backbones::Cache(cache) => Backbone::load(name, cache, self.device)
                    .with_context(|| format!("vision-aided network '{name}'"))?,
                Backbones::TinyRandom => Backbone::tiny(name, self.device)?,
            };
            if let Some(seed) = self.head_seed {
                tch::manual_seed(crate::util::derive_seed(seed, u64::MAX - 1 - i as u64) as i64);
            }
            d.add(backbone, loss)?;
        }
        Ok(d)
    }
}

impl Discriminator {
    pub fn builder(bank: &str, losses: &str) -> DiscriminatorBuilder {
        DiscriminatorBuilder {
            bank: bank.to_string(),
            losses: losses.to_string(),
            head: HeadConfig::default(),
            augment: Augment::default(),
            device: Device::Cpu,
            head_seed: None,
        }
    }

    /// An ensemble without networks; [`Discriminator::add`] adds them.
    pub fn new(head_cfg: HeadConfig, augment: Augment, device: Device) -> Result<Self> {
        Ok(Self {
            vs: VarStore::new(device),
            members: Vec::new(),
            head_cfg,
            augmenter: Augmenter::new(&augment)?,
            augment,
        })
    }

    /// Adds a network with the reference's head for it, fresh (drawn from libtorch's global
    /// generator), under the backbone's name, and ADA probability 0.
    pub fn add(&mut self, backbone: Backbone, loss: LossType) -> Result<()> {
        self.add_with_head(backbone, loss, |vs, cfg, backbone| {
            Head::for_backbone(vs, backbone, cfg, loss.is_multilevel())
        })
    }

    /// [`Discriminator::add`] with a head of the caller's making, built under the var-store
    /// path it is given (e.g. other widths than the reference's).
    pub fn add_with_head(
        &mut self,
        backbone: Backbone,
        loss: LossType,
        head: impl FnOnce(tch::nn::Path, &HeadConfig, &Backbone) -> Result<Head>,
    ) -> Result<()> {
        let name = backbone.name;
        ensure!(
            self.members.iter().all(|m| m.name() != name),
            "vision-aided network '{name}' is already in the ensemble"
        );
        let head = head(self.vs.root() / name, &self.head_cfg, &backbone)?;
        ensure!(
            !head.is_multilevel() || loss.is_multilevel(),
            "{name}: loss {loss} does not take the multi-level head's outputs"
        );
        self.members.push(Member {
            backbone,
            head,
            loss,
            ada_p: 0.0,
            ada_sign_sum: 0.0,
            ada_sign_count: 0,
        });
        Ok(())
    }

    /// The trainable head parameters (`<network>.<layer>...`), for an optimiser.
    pub fn heads(&self) -> &VarStore {
        &self.vs
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.members.iter().map(Member::name).collect()
    }

    pub fn augment(&self) -> &Augment {
        &self.augment
    }

    pub fn head_config(&self) -> HeadConfig {
        self.head_cfg
    }

    /// Converts backbones and heads, e.g. to `Kind::Double` for parity tests.
    pub fn set_kind(&mut self, kind: Kind) {
        self.vs.set_kind(kind);
        for m in &mut self.members {
            m.backbone.set_kind(kind);
        }
    }

    /// Every network's head outputs for its own augmented copy of `images` (`[B, C, H, W]` in
    /// [-1, 1]). `detach`: run the backbones without gradients (the discriminator step; the
    /// heads still get theirs).
    pub fn logits(
        &self,
        images: &Tensor,
        labels: Option<&Tensor>,
        detach: bool,
    ) -> Vec<Vec<Tensor>> {
        self.members
            .iter()
            .map(|m| {
                let features = || m.backbone.forward(&self.augmenter.apply(images, m.ada_p));
                let f = if detach {
                    tch::no_grad(features)
                } else {
                    features()
                };
                m.head.forward(&f, labels)
            })
            .collect()
    }

    /// The loss as the reference returns it: each network's loss type applied to its head's
    /// outputs, summed over the networks — per sample (`[B, 1]`) for the sigmoid types, a
    /// scalar for the hinge types (they add by broadcasting). Real images also feed the ADA
    /// statistics.
    pub fn per_sample_loss(
        &mut self,
        images: &Tensor,
        labels: Option<&Tensor>,
        target: Target,
        detach: bool,
    ) -> Tensor {
        let outputs = self.logits(images, labels, detach);
        if target == Target::Real {
            for (m, out) in self.members.iter_mut().zip(&outputs) {
                let last = out.last().expect("a head gives at least one output");
                m.ada_sign_sum += last.detach().sign().sum(Kind::Double).double_value(&[]);
                m.ada_sign_count += last.numel() as u64;
            }
        }
        let mut losses = self
            .members
            .iter()
            .zip(&outputs)
            .map(|(m, out)| m.loss.loss(out, target));
        let first = losses.next().expect("the ensemble has no networks");
        losses.fold(first, |acc, l| acc + l)
    }

    /// The batch mean of [`Discriminator::per_sample_loss`], ready for `backward()`. In the
    /// discriminator step (`Real`, `Fake`) the backbones run without gradients; in the
    /// generator step the gradient flows through them to the images.
    pub fn loss(&mut self, images: &Tensor, target: Target) -> Result<Tensor> {
        self.conditional_loss(images, None, target)
    }

    /// [`Discriminator::loss`] with class labels (`[B]` indices) for the projection heads.
    pub fn conditional_loss(
        &mut self,
        images: &Tensor,
        labels: Option<&Tensor>,
        target: Target,
    ) -> Result<Tensor> {
        ensure!(
            !self.members.is_empty(),
            "the vision-aided ensemble has no networks"
        );
        ensure!(
            (self.head_cfg.num_classes > 0) == labels.is_some(),
            "the heads are {}conditional but labels were {}given",
            if self.head_cfg.num_classes > 0 {
                ""
            } else {
                "un"
            },
            if labels.is_some() { "" } else { "not " }
        );
        let detach = target != Target::Generator;
        Ok(self
            .per_sample_loss(images, labels, target, detach)
            .mean(None::<Kind>))
    }

    /// ADA's update (with [`Augment::Ada`]; otherwise nothing): every network's p moves by
    /// `sign(r − target) · images / (ADA_KIMG · 1000)`, clamped to [0, 1], where r is the mean
    /// sign of its last-level real logits since the previous update. `images`: how many images
    /// the statistics cover (batch × [`ADA_INTERVAL`]).
    pub fn adjust_ada(&mut self, images: u64) {
        let Augmenter::Ada { target, .. } = self.augmenter else {
            return;
        };
        for m in &mut self.members {
            if m.ada_sign_count == 0 {
                continue;
            }
            let r = m.ada_sign_sum / m.ada_sign_count as f64;
            let step = (r - target).signum() * images as f64 / (ADA_KIMG * 1000.0);
            m.ada_p = (m.ada_p + step).clamp(0.0, 1.0);
            m.ada_sign_sum = 0.0;
            m.ada_sign_count = 0;
        }
    }

    /// The per-network state a snapshot keeps besides the head weights.
    pub fn state(&self) -> Vec<MemberState> {
        self.members
            .iter()
            .map(|m| MemberState {
                name: m.name().to_string(),
                loss: m.loss.to_string(),
                ada_p: m.ada_p,
                ada_sign_sum: m.ada_sign_sum,
                ada_sign_count: m.ada_sign_count,
            })
            .collect()
    }

    /// Restores [`Discriminator::state`] for the networks it names (a network added since
    /// keeps its fresh state).
    pub fn restore_state(&mut self, states: &[MemberState]) -> Result<()> {
        for s in states {
            let Some(m) = self.members.iter_mut().find(|m| m.name() == s.name) else {
                bail!(
                    "the snapshot has vision-aided network '{}', this ensemble does not",
                    s.name
                )
            };
            ensure!(
                m.loss.to_string() == s.loss,
                "vision-aided network '{}': loss {} in the snapshot, {} now",
                s.name,
                s.loss,
                m.loss
            );
            m.ada_p = s.ada_p;
            m.ada_sign_sum = s.ada_sign_sum;
            m.ada_sign_count = s.ada_sign_count;
        }
        Ok(())
    }
}
