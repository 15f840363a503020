//! FID and KID on the TF Inception's pool3 features, matching clean-fid.
//!
//! The pieces: [`inception`] (the network, rebuilt from the cached `inception_fid` weights),
//! [`resize`] (the two [`Mode`]s: clean-fid's PIL bicubic and the TF1 bilinear of the legacy
//! metrics), [`features`] (the extractor and the image sets it reads: folders, dataset files,
//! snapshots), [`stats`] (f64 statistics, FID, KID) and [`stats_cache`] (real-set statistics of
//! dataset files on disk).
//!
//! During training, [`FidEvaluator`] keeps the network and the real statistics and measures
//! generated images on each call:
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use vagan::metrics::{FidEvaluator, MetricOptions};
//! let options = MetricOptions::default(); // clean mode, N − 1 covariance, batch 64, CUDA if seen
//! let evaluator = FidEvaluator::open(std::path::Path::new("data/set.vds"), None, &options)?;
//! // The closure returns `n` images [n, C, H, W]: uint8, or float in [-1, 1] (quantised here).
//! let fid = evaluator.fid(5000, |n| Ok(tch::Tensor::zeros([n as i64, 3, 32, 32], tch::kind::FLOAT_CPU)))?;
//! # Ok(()) }
//! ```
pub mod cli;
pub mod features;
pub mod inception;
pub mod resize;
pub mod stats;
pub mod stats_cache;

pub use features::{quantize, FeatureExtractor, ImageSet};
pub use resize::Mode;
pub use stats::{frechet_distance, kernel_distance, Covariance, FeatureStats, Kid, SetStatistics};
pub use stats_cache::StatsCache;

use anyhow::{ensure, Result};
use indicatif::ProgressBar;
use stats::Gaussian;
use std::path::Path;
use tch::Device;

/// How images are measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricOptions {
    pub mode: Mode,
    pub device: Device,
    /// Images per Inception call.
    pub batch: usize,
    pub covariance: Covariance,
}

impl Default for MetricOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Clean,
            device: Device::cuda_if_available(),
            batch: 64,
            covariance: Covariance::Unbiased,
        }
    }
}

/// The statistics of the first `num` images of `set` (and their features when
/// `keep_features`). A dataset file's statistics go through `cache` when one is given.
pub fn set_statistics(
    set: &mut ImageSet,
    num: usize,
    extractor: &FeatureExtractor,
    batch: usize,
    keep_features: bool,
    cache: Option<&StatsCache>,
    progress: &ProgressBar,
) -> Result<SetStatistics> {
    let key = match (&*set, cache) {
        (ImageSet::Dataset { path, dataset }, Some(_)) => {
            Some(StatsCache::key(path, &dataset.header, num, extractor)?)
        }
        _ => None,
    };
    if let (Some(key), Some(cache)) = (&key, cache) {
        if let Some(cached) = cache.load(key)? {
            if cached.features.is_some() || !keep_features {
                progress.inc(num as u64);
                return Ok(cached);
            }
        }
    }
    let mut stats = FeatureStats::new(keep_features);
    set.extract(extractor, num, batch, &mut stats, progress)?;
    let statistics = SetStatistics {
        gaussian: stats.gaussian(Covariance::Unbiased)?,
        features: stats.features(),
    };
    if let (Some(key), Some(cache)) = (&key, cache) {
        cache.store(key, &statistics, set.path())?;
    }
    Ok(statistics)
}

/// FID between two measured sets, with the covariance over `covariance`'s denominator.
pub fn fid(a: &SetStatistics, b: &SetStatistics, covariance: Covariance) -> f64 {
    let convert = |g: &Gaussian| g.with_denominator(Covariance::Unbiased, covariance);
    frechet_distance(&convert(&a.gaussian), &convert(&b.gaussian))
}

/// The Inception and a real set's statistics, for measuring generated images again and again
/// (e.g. every few ticks of training): each [`FidEvaluator::fid`] call only runs the fakes.
pub struct FidEvaluator {
    extractor: FeatureExtractor,
    real: Gaussian,
    options: MetricOptions,
}

impl FidEvaluator {
    /// Loads the Inception from the default weights cache and measures the first `num_real`
    /// images (all when `None`) of `real`: a dataset file (statistics cached in
    /// [`StatsCache::open_default`]), an image folder or a zip.
    pub fn open(real: &Path, num_real: Option<usize>, options: &MetricOptions) -> Result<Self> {
        let cache = crate::weights::cache::Cache::open_default()?;
        let extractor = FeatureExtractor::load(&cache, options.mode, options.device)?;
        let mut set = ImageSet::open(real, "real images")?;
        let stats_cache = StatsCache::open_default()?;
        Self::new(extractor, &mut set, num_real, options, Some(&stats_cache))
    }

    /// [`FidEvaluator::open`] with a given extractor (its mode and device win over `options`')
    /// and statistics cache.
    pub fn new(
        extractor: FeatureExtractor,
        real: &mut ImageSet,
        num_real: Option<usize>,
        options: &MetricOptions,
        cache: Option<&StatsCache>,
    ) -> Result<Self> {
        let num = real.count(num_real, 0, "num_real")?;
        let statistics = set_statistics(
            real,
            num,
            &extractor,
            options.batch,
            false,
            cache,
            &ProgressBar::hidden(),
        )?;
        let options = MetricOptions {
            mode: extractor.mode(),
            device: extractor.device(),
            ..*options
        };
        Ok(Self {
            extractor,
            real: statistics
                .gaussian
                .with_denominator(Covariance::Unbiased, options.covariance),
            options,
        })
    }

    /// How many real images the statistics cover.
    pub fn real_count(&self) -> i64 {
        self.real.count
    }

    /// FID of `num` generated images against the real statistics. `generate(n)` returns the
    /// next `n` images `[n, C, H, W]`: uint8, or float in [-1, 1] (quantised like
    /// [`crate::images::to_u8`]); at most `options.batch` are asked at a time.
    pub fn fid(
        &self,
        num: usize,
        mut generate: impl FnMut(usize) -> Result<tch::Tensor>,
    ) -> Result<f64> {
        let mut stats = FeatureStats::new(false);
        while (stats.count() as usize) < num {
            let n = self.options.batch.min(num - stats.count() as usize);
            let images = generate(n)?;
            ensure!(
                images.size().first() == Some(&(n as i64)),
                "the generator closure returned {:?} images, {n} were asked",
                images.size()
            );
            stats.add(&self.extractor.features(&quantize(&images))?);
        }
        let fake = stats.gaussian(self.options.covariance)?;
        Ok(frechet_distance(&self.real, &fake))
    }
}
