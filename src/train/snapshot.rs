//! Snapshots: one safetensors file with G, D, G_ema, the vision-aided heads (`CV`), every
//! optimiser's state, and a JSON metadata entry with the options, network configurations,
//! training counters and the vision-aided networks' ADA state.
use super::TrainOptions;
use crate::nets::{DiscriminatorConfig, Generator, GeneratorConfig};
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};

pub const FORMAT_VERSION: u32 = 2;
/// The copy of the snapshot with the best value of a run's first metric.
pub const BEST: &str = "network-snapshot-best.safetensors";
const META_KEY: &str = "vagan";

/// Everything besides tensors that a resumed run needs to continue exactly. Random numbers are
/// drawn from generators reseeded from (options.seed, batch_idx) at every step, so the
/// counters are the whole random state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    pub cur_nimg: u64,
    pub cur_tick: u64,
    pub batch_idx: u64,
    /// Running mean of path lengths (path-length regularisation).
    pub pl_mean: f64,
    /// Wall-clock seconds spent training so far (for the logs only).
    pub total_time_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub format_version: u32,
    pub options: TrainOptions,
    pub g: GeneratorConfig,
    pub d: DiscriminatorConfig,
    pub state: TrainState,
    /// The vision-aided networks' state besides their head weights (empty without them).
    pub cv: Vec<crate::vision_aided::MemberState>,
}

/// The kimg part of the names of files written after `nimg` images (snapshots, grids): whole
/// kimg as in StyleGAN2-ADA (`000004`), with the images beyond whole kimg appended when there are
/// any (`000004.096`: runs with ticks under 1 kimg and tests), so that no two collide.
pub fn kimg_label(nimg: u64) -> String {
    if nimg % 1000 == 0 {
        format!("{:06}", nimg / 1000)
    } else {
        format!("{:06}.{:03}", nimg / 1000, nimg % 1000)
    }
}

/// File name of the snapshot taken after `nimg` images.
pub fn file_name(nimg: u64) -> String {
    format!("network-snapshot-{}.safetensors", kimg_label(nimg))
}

fn nimg_of(name: &str) -> Option<u64> {
    let stem = name
        .strip_prefix("network-snapshot-")?
        .strip_suffix(".safetensors")?;
    let (k, rest) = stem.split_once('.').unwrap_or((stem, "0"));
    Some(k.parse::<u64>().ok()? * 1000 + rest.parse::<u64>().ok()?)
}

/// The most advanced complete snapshot in a run directory. Temporary files from an
/// interrupted write are hidden (`.name.tmp`) and never match.
pub fn latest(run_dir: &Path) -> Result<PathBuf> {
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(run_dir)
        .with_context(|| format!("cannot list run directory {}", run_dir.display()))?
    {
        let p = e?.path();
        if let Some(n) = p.file_name().and_then(|f| nimg_of(&f.to_string_lossy())) {
            if best.as_ref().is_none_or(|(b, _)| n > *b) {
                best = Some((n, p));
            }
        }
    }
    best.map(|b| b.1).with_context(|| {
        format!(
            "{}: no network-snapshot-*.safetensors to resume from",
            run_dir.display()
        )
    })
}

/// A run directory's best snapshot by its first metric when there is one, else its latest;
/// a snapshot file as it is.
pub fn best_or_latest(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let best = path.join(BEST);
    if best.exists() {
        Ok(best)
    } else {
        latest(path)
    }
}

pub struct Snapshot {
    pub meta: SnapshotMeta,
    tensors: HashMap<String, Tensor>,
    path: PathBuf,
}

impl Snapshot {
    pub fn save(
        path: &Path,
        meta: &SnapshotMeta,
        groups: &[(&str, Vec<(String, Tensor)>)],
    ) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = groups
            .iter()
            .flat_map(|(prefix, ts)| {
                ts.iter()
                    .map(move |(n, t)| (format!("{prefix}.{n}"), t.shallow_clone()))
            })
            .collect();
        let metadata = HashMap::from([(META_KEY.to_string(), serde_json::to_string(meta)?)]);
        crate::weights::save(path, &tensors, &metadata)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let (tensors, metadata) = crate::weights::load(path)?;
        let json = metadata
            .get(META_KEY)
            .with_context(|| format!("{}: not a vagan snapshot (no metadata)", path.display()))?;
        let meta: SnapshotMeta = serde_json::from_str(json)
            .with_context(|| format!("{}: unreadable snapshot metadata", path.display()))?;
        ensure!(
            meta.format_version == FORMAT_VERSION,
            "{}: snapshot format {} (this vagan reads {FORMAT_VERSION})",
            path.display(),
            meta.format_version
        );
        Ok(Self {
            meta,
            tensors: tensors.into_iter().collect(),
            path: path.to_path_buf(),
        })
    }

    pub fn get(&self, key: &str) -> Option<Tensor> {
        self.tensors.get(key).map(|t| t.shallow_clone())
    }

    /// Copies the tensors saved under `prefix` into every variable of `vs`.
    pub fn restore(&self, prefix: &str, vs: &VarStore) -> Result<()> {
        self.restore_partial(prefix, vs, |_| false)
    }

    /// [`Snapshot::restore`], leaving the variables for which `fresh(name)` holds as they are
    /// when the snapshot lacks them.
    pub fn restore_partial(
        &self,
        prefix: &str,
        vs: &VarStore,
        fresh: impl Fn(&str) -> bool,
    ) -> Result<()> {
        let dotted = format!("{prefix}.");
        let group: HashMap<String, Tensor> = self
            .tensors
            .iter()
            .filter_map(|(k, t)| Some((k.strip_prefix(&dotted)?.to_string(), t.shallow_clone())))
            .collect();
        crate::weights::load_into_partial(
            vs,
            &group,
            &format!("{} ({prefix})", self.path.display()),
            |_| false,
            fresh,
        )
    }

    /// The exponential-moving-average generator, ready for generation.
    pub fn generator_ema(&self, device: Device) -> Result<(VarStore, Generator)> {
        let vs = VarStore::new(device);
        let g = Generator::new(vs.root(), &self.meta.g);
        crate::util::use_channels_last(&vs);
        self.restore("G_ema", &vs)?;
        Ok((vs, g))
    }
}

/// Variables of a var store as (name, tensor), sorted by name.
pub fn named(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<_> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
