//! The bank: every off-the-shelf network by name, built, given weights from the cache (in any of
//! the key layouts its module understands) and frozen.
use super::efficientnet_lite::{EfficientNetLite, EfficientNetLiteConfig};
use super::swin::{self, Swin, SwinConfig};
use super::vgg::{self, Vgg, VggConfig};
use super::vit::{self, KeyLayout, ViT, ViTConfig};
use crate::weights::cache::Cache;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// The bank's members, in the order `--bank all` lists them.
pub const MEMBERS: &[&str] = &[
    "clip_vit_b32",
    "dino_vitb16",
    "swin_t",
    "vgg16",
    "vgg16_antialiased",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
];

/// The networks a `--bank` flag names: `all` is every member whose weights are cached (the others
/// are reported on stderr); otherwise a comma-separated list whose every name must be cached.
pub fn resolve(spec: &str, cache: &Cache) -> Result<Vec<String>> {
    if spec == "all" {
        let mut cached = Vec::new();
        for &m in MEMBERS {
            if cache.get(m)?.is_some() {
                cached.push(m.to_string());
            } else {
                eprintln!("--bank all: skipping {m}, not cached (vagan weights fetch {m})");
            }
        }
        return Ok(cached);
    }
    let names: Vec<String> = spec.split(',').map(|s| s.trim().to_string()).collect();
    for n in &names {
        member(n).context("--bank")?;
        cache.path(n).with_context(|| format!("--bank: {n}"))?;
    }
    Ok(names)
}

/// An architecture with its configuration.
#[derive(Debug, Clone)]
pub enum Config {
    EfficientNet(EfficientNetLiteConfig),
    ViT(ViTConfig),
    Swin(SwinConfig),
    Vgg(VggConfig),
}

impl Config {
    /// A member's configuration: the full network, or its tiny test configuration.
    pub fn of(name: &str, tiny: bool) -> Result<Self> {
        let pick = |full: fn() -> Self, small: fn() -> Self| if tiny { small() } else { full() };
        let lite = |full: fn() -> EfficientNetLiteConfig| {
            Config::EfficientNet(if tiny {
                EfficientNetLiteConfig::tiny()
            } else {
                full()
            })
        };
        Ok(match member(name)? {
            "clip_vit_b32" => pick(
                || Config::ViT(ViTConfig::clip_b32()),
                || Config::ViT(ViTConfig::clip_tiny()),
            ),
            "dino_vitb16" => pick(
                || Config::ViT(ViTConfig::dino_b16()),
                || Config::ViT(ViTConfig::dino_tiny()),
            ),
            "swin_t" => pick(
                || Config::Swin(SwinConfig::swin_t()),
                || Config::Swin(SwinConfig::tiny()),
            ),
            "vgg16" => pick(
                || Config::Vgg(VggConfig::vgg16()),
                || Config::Vgg(VggConfig::tiny(false)),
            ),
            "vgg16_antialiased" => pick(
                || Config::Vgg(VggConfig::vgg16_antialiased()),
                || Config::Vgg(VggConfig::tiny(true)),
            ),
            "efficientnet_lite0" => lite(EfficientNetLiteConfig::lite0),
            "efficientnet_lite1" => lite(EfficientNetLiteConfig::lite1),
            "efficientnet_lite2" => lite(EfficientNetLiteConfig::lite2),
            _ => unreachable!("member() checked the name"),
        })
    }
}

enum Architecture {
    EfficientNet(EfficientNetLite),
    ViT(ViT),
    Swin(Swin),
    Vgg(Vgg),
}

/// What a backbone gives the heads and the linear probe.
pub struct Features {
    /// The spatial maps the heads read, channels first: CLIP and DINO their two tapped token
    /// maps, Swin and VGG their final map, EfficientNet-Lite the four multi-scale maps that
    /// Projected GAN taps followed by its final 1280-channel map.
    pub maps: Vec<Tensor>,
    /// The pooled vector of the linear probe (for CLIP and DINO also the last head level).
    pub pooled: Tensor,
}

/// A frozen backbone: no parameter takes gradients, normalisation layers use running
/// statistics, gradients flow to the input images.
pub struct Backbone {
    pub name: &'static str,
    vs: VarStore,
    net: Architecture,
}

fn member(name: &str) -> Result<&'static str> {
    MEMBERS
        .iter()
        .find(|m| **m == name)
        .copied()
        .with_context(|| {
            format!(
                "unknown backbone '{name}' (the bank: {})",
                MEMBERS.join(", ")
            )
        })
}

impl Backbone {
    /// The network with its initial (random) weights: for tests and speed measurements.
    pub fn random(name: &str, device: Device) -> Result<Self> {
        Self::with_config(name, &Config::of(name, false)?, device)
    }

    /// A tiny random network of the same architecture (the configuration the parity fixtures
    /// use), for fast tests of everything built on the bank.
    pub fn tiny(name: &str, device: Device) -> Result<Self> {
        Self::with_config(name, &Config::of(name, true)?, device)
    }

    /// The member `name` (its heads and defaults follow the name) built with any configuration
    /// of its architecture, random weights.
    pub fn with_config(name: &str, cfg: &Config, device: Device) -> Result<Self> {
        let name = member(name)?;
        let mut vs = VarStore::new(device);
        let root = vs.root();
        let net = match cfg {
            Config::EfficientNet(c) => Architecture::EfficientNet(EfficientNetLite::new(root, c)),
            Config::ViT(c) => Architecture::ViT(ViT::new(root, c)),
            Config::Swin(c) => Architecture::Swin(Swin::new(root, c)),
            Config::Vgg(c) => Architecture::Vgg(Vgg::new(root, c)),
        };
        vs.freeze();
        crate::util::use_channels_last(&vs);
        Ok(Self { name, vs, net })
    }

    /// The network with the weights cached under its name (`vagan weights fetch|import`).
    pub fn load(name: &str, cache: &Cache, device: Device) -> Result<Self> {
        let backbone = Self::random(name, device)?;
        let file = cache.path(backbone.name)?;
        backbone.load_weights(&file)?;
        Ok(backbone)
    }

    /// Copies the weights of a checkpoint file (safetensors, in any key layout this network's
    /// module understands) into the network.
    pub fn load_weights(&self, file: &std::path::Path) -> Result<()> {
        let origin = file.display().to_string();
        let (tensors, _) = crate::weights::load(file)?;
        let tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
        let vs = &self.vs;
        match &self.net {
            Architecture::EfficientNet(_) => {
                crate::weights::load_into(vs, &tensors, &origin, |k| {
                    k.ends_with("num_batches_tracked")
                })?
            }
            Architecture::ViT(_) => {
                let Some(layout) = KeyLayout::detect(tensors.keys()) else {
                    bail!("{origin}: not a CLIP, DINO or transformers ViT checkpoint (unrecognised key names)")
                };
                let converted = vit::convert_keys(layout, tensors)?;
                crate::weights::load_into(vs, &converted, &origin, |_| false)?
            }
            Architecture::Swin(_) => {
                let converted = swin::convert_checkpoint(tensors);
                crate::weights::load_into(vs, &converted, &origin, swin::is_unused_key)?
            }
            Architecture::Vgg(_) => {
                let converted = vgg::convert_checkpoint(tensors);
                crate::weights::load_into(vs, &converted, &origin, vgg::is_unused_key)?
            }
        }
        Ok(())
    }

    /// Images in [-1, 1], `[N, 1 or 3, H, W]` at any resolution; each network resizes and
    /// normalises as its reference does.
    pub fn forward(&self, images: &Tensor) -> Features {
        match &self.net {
            Architecture::EfficientNet(n) => {
                let o = n.forward(images);
                let mut maps = o.features;
                maps.push(o.final_map);
                Features {
                    maps,
                    pooled: o.pooled,
                }
            }
            Architecture::ViT(n) => {
                let o = n.forward(images);
                Features {
                    maps: o.features,
                    pooled: o.pooled,
                }
            }
            Architecture::Swin(n) => {
                let o = n.forward(images);
                Features {
                    maps: vec![o.map],
                    pooled: o.pooled,
                }
            }
            Architecture::Vgg(n) => {
                let o = n.forward(images);
                Features {
                    maps: vec![o.map],
                    pooled: o.pooled,
                }
            }
        }
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The floating-point kind of the weights (inputs must match it).
    pub fn kind(&self) -> tch::Kind {
        self.vs.kind()
    }

    /// Converts the weights, e.g. to `Kind::Double` for parity tests.
    pub fn set_kind(&mut self, kind: tch::Kind) {
        self.vs.set_kind(kind);
    }
}
