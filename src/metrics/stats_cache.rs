//! Real-set statistics on disk: `$VAGAN_HOME/stats` (next to the weights cache), one safetensors
//! file per (dataset content, Inception weights, mode, resolution, image count), holding the
//! mean and the unbiased covariance in f64 and, once KID has needed them, the features.
use super::features::FeatureExtractor;
use super::stats::{Gaussian, SetStatistics};
use crate::data::DatasetHeader;
use crate::weights::cache::Cache;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub struct StatsCache {
    dir: PathBuf,
}

/// The sha256 of a file's bytes, streamed.
fn file_sha256(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

impl StatsCache {
    /// `stats` beside the default weights cache directory.
    pub fn open_default() -> Result<Self> {
        let weights = Cache::default_dir()?;
        let base = weights.parent().unwrap_or(Path::new("."));
        Ok(Self::at(base.join("stats")))
    }

    pub fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of the first `count` images of a dataset file measured by `extractor`.
    pub fn key(
        dataset: &Path,
        header: &DatasetHeader,
        count: usize,
        extractor: &FeatureExtractor,
    ) -> Result<String> {
        let content = file_sha256(dataset)?;
        let weights: String = extractor.weights_sha256().chars().take(12).collect();
        Ok(format!(
            "{}-{}-r{}-n{count}-inception{weights}",
            &content[..16],
            extractor.mode(),
            header.resolution
        ))
    }

    fn file(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.safetensors"))
    }

    /// The cached statistics for `key`, if any.
    pub fn load(&self, key: &str) -> Result<Option<SetStatistics>> {
        let file = self.file(key);
        if !file.exists() {
            return Ok(None);
        }
        let (tensors, meta) = crate::weights::load(&file)?;
        let mut tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
        let count = meta
            .get("count")
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("{}: no image count in the metadata", file.display()))?;
        let mut take = |name: &str| {
            tensors
                .remove(name)
                .with_context(|| format!("{}: no tensor {name}", file.display()))
        };
        let gaussian = Gaussian {
            count,
            mean: take("mean")?,
            cov: take("cov")?,
        };
        Ok(Some(SetStatistics {
            gaussian,
            features: take("features").ok(),
        }))
    }

    /// Stores statistics under `key`; `source` is recorded for the user.
    pub fn store(&self, key: &str, statistics: &SetStatistics, source: &Path) -> Result<()> {
        let gaussian = &statistics.gaussian;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let mut tensors = vec![
            ("mean".to_string(), gaussian.mean.shallow_clone()),
            ("cov".to_string(), gaussian.cov.shallow_clone()),
        ];
        if let Some(f) = &statistics.features {
            tensors.push(("features".to_string(), f.shallow_clone()));
        }
        let meta = HashMap::from([
            ("count".to_string(), gaussian.count.to_string()),
            ("source".to_string(), source.display().to_string()),
        ]);
        crate::weights::save(&self.file(key), &tensors, &meta)
    }
}
