//! Inception feature extraction throughput over an image folder (decode, resize, network), in the
//! JSON shape of bench/reference_metrics.py's `features` command.
//!
//! cargo run --release --example bench_metrics -- FOLDER MODE BATCH THREADS OUT.json
use indicatif::ProgressBar;
use std::time::Instant;
use tch::Device;
use vagan::metrics::{set_statistics, FeatureExtractor, ImageSet, Mode};
use vagan::weights::cache::Cache;

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        a.len() == 5,
        "usage: bench_metrics FOLDER MODE BATCH THREADS OUT.json"
    );
    let mode: Mode = a[1].parse()?;
    let batch: usize = a[2].parse()?;
    let threads: i32 = a[3].parse()?;
    tch::set_num_threads(threads);
    let extractor = FeatureExtractor::load(&Cache::open_default()?, mode, Device::Cpu)?;
    let mut set = ImageSet::open(std::path::Path::new(&a[0]), "FOLDER")?;
    let num = set.available().unwrap_or(0);
    // One batch first: the first calls pick the convolution algorithms.
    set_statistics(
        &mut set,
        batch.min(num),
        &extractor,
        batch,
        false,
        None,
        &ProgressBar::hidden(),
    )?;
    let t0 = Instant::now();
    set_statistics(
        &mut set,
        num,
        &extractor,
        batch,
        false,
        None,
        &ProgressBar::hidden(),
    )?;
    let seconds = t0.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "impl": "vagan", "mode": mode.name(), "images": num, "batch": batch, "threads": threads,
        "seconds": seconds, "img_per_s": num as f64 / seconds,
        "peak_rss_gb": vagan::train::peak_rss_gb(),
    });
    std::fs::write(&a[4], serde_json::to_string_pretty(&out)?)?;
    println!("vagan features ({mode}): {:.2} img/s", out["img_per_s"]);
    Ok(())
}
