//! `vagan metrics fid|kid`: FID or KID between a real and a fake image set.
//!
//! Prints the value alone on stdout (KID: `mean ± std`), or one JSON object with `--json`; what
//! was measured goes to stderr.
use super::features::{FeatureExtractor, ImageSet};
use super::{fid, kernel_distance, set_statistics, Covariance, Mode, StatsCache};
use crate::weights::cache::Cache;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum MetricsCommand {
    /// Fréchet Inception distance between two image sets.
    Fid(MetricsArgs),
    /// Kernel Inception distance between two image sets.
    Kid(MetricsArgs),
}

/// How many images a snapshot generates when --num is not given (FID50k).
const DEFAULT_GENERATED: usize = 50_000;

#[derive(Args)]
pub struct MetricsArgs {
    /// Real images: a dataset file (statistics cached), an image folder, a zip or an IDX file.
    #[arg(long)]
    pub real: PathBuf,
    /// Fake images: an image folder, a zip, a dataset file, or a snapshot (a file, or a run
    /// directory: its latest snapshot; image i from seed i, truncation 1).
    #[arg(long)]
    pub fake: PathBuf,
    /// Fake images to measure: the first N of a folder (sorted by path) or dataset, seeds 0..N-1
    /// of a snapshot (default: all of a folder or dataset, 50000 from a snapshot).
    #[arg(long)]
    pub num: Option<usize>,
    /// Real images to measure, the first N (default: all).
    #[arg(long)]
    pub num_real: Option<usize>,
    /// clean (clean-fid's PIL bicubic resize) or legacy-tf (TF1 bilinear, as StyleGAN2-ADA).
    #[arg(long, default_value = "clean")]
    pub mode: Mode,
    /// Print one JSON object instead of the bare value.
    #[arg(long)]
    pub json: bool,
    /// Images per Inception call.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// FID: covariance over N (StyleGAN2-ADA) instead of N − 1 (clean-fid).
    #[arg(long)]
    pub population_cov: bool,
    /// KID: number of random subsets.
    #[arg(long, default_value_t = 100)]
    pub kid_subsets: usize,
    /// KID: largest subset size (the subsets have min(this, real count, fake count) images).
    #[arg(long, default_value_t = 1000)]
    pub kid_subset_size: usize,
    /// KID: seed of the subsets.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Recompute a dataset file's statistics instead of reading them from the cache.
    #[arg(long)]
    pub no_cache: bool,
}

pub fn run(command: MetricsCommand) -> Result<()> {
    let (is_kid, a) = match command {
        MetricsCommand::Fid(a) => (false, a),
        MetricsCommand::Kid(a) => (true, a),
    };
    let started = std::time::Instant::now();
    let device = crate::util::parse_device(&a.device)?;
    let mut real = ImageSet::open(&a.real, "--real")?;
    let mut fake = ImageSet::open(&a.fake, "--fake")?;
    let num_real = real.count(a.num_real, DEFAULT_GENERATED, "--num-real")?;
    let num_fake = fake.count(a.num, DEFAULT_GENERATED, "--num")?;
    let extractor = FeatureExtractor::load(&Cache::open_default()?, a.mode, device)?;
    let cache = if a.no_cache {
        None
    } else {
        Some(StatsCache::open_default()?)
    };
    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new((num_real + num_fake) as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} images, ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let measure = |set: &mut ImageSet, num, cache| {
        set_statistics(set, num, &extractor, a.batch, is_kid, cache, &progress)
    };
    let real_stats = measure(&mut real, num_real, cache.as_ref())?;
    let fake_stats = measure(&mut fake, num_fake, None)?;
    progress.finish_and_clear();
    let covariance = if a.population_cov {
        Covariance::Population
    } else {
        Covariance::Unbiased
    };
    let mut report = serde_json::json!({
        "metric": if is_kid { "kid" } else { "fid" },
        "mode": a.mode.name(),
        "real": real.path(),
        "fake": fake.path(),
        "num_real": num_real,
        "num_fake": num_fake,
    });
    let value = if is_kid {
        let kept = "KID keeps the features";
        let kid = kernel_distance(
            real_stats.features.as_ref().context(kept)?,
            fake_stats.features.as_ref().context(kept)?,
            a.kid_subsets,
            a.kid_subset_size,
            a.seed,
        )?;
        report["value"] = kid.mean.into();
        report["std"] = kid.std.into();
        report["subsets"] = kid.subsets.into();
        report["subset_size"] = kid.subset_size.into();
        report["seed"] = a.seed.into();
        format!("{:.8} ± {:.8}", kid.mean, kid.std)
    } else {
        let value = fid(&real_stats, &fake_stats, covariance);
        report["value"] = value.into();
        report["covariance"] = serde_json::to_value(covariance)?;
        format!("{value:.6}")
    };
    report["seconds"] = started.elapsed().as_secs_f64().into();
    if a.json {
        println!("{report}");
    } else {
        eprintln!(
            "{} ({} mode): {num_real} real images from {}, {num_fake} fake from {}, {:.1} s",
            if is_kid { "KID" } else { "FID" },
            a.mode,
            real.path().display(),
            fake.path().display(),
            started.elapsed().as_secs_f64()
        );
        println!("{value}");
    }
    Ok(())
}
