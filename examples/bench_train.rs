//! Training-step throughput of vagan, in the JSON shape of bench/reference_train.py so that
//! bench/train_throughput.sh can compare the two side by side.
//!
//! cargo run --release --example bench_train -- DATA.vds BATCH CBASE CMAX ZDIM STEPS WARMUP THREADS OUT.json
use std::time::Instant;
use vagan::train::{TickStats, TrainOptions, Trainer};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        a.len() == 9,
        "usage: bench_train DATA BATCH CBASE CMAX ZDIM STEPS WARMUP THREADS OUT.json"
    );
    let p = |i: usize| a[i].parse::<i64>().unwrap();
    let (batch, cbase, cmax, zdim, steps, warmup, threads) =
        (p(1), p(2), p(3), p(4), p(5), p(6), p(7));
    tch::set_num_threads(threads as i32);
    let header = vagan::data::read_header(std::path::Path::new(&a[0]))?.0;
    let opts = TrainOptions {
        data: a[0].clone().into(),
        kimg: 1e6,
        batch,
        tick_kimg: 1e6,
        snap: 1,
        seed: 0,
        cbase,
        cmax,
        z_dim: zdim,
        w_dim: zdim,
        map_layers: 2,
        glr: 0.0025,
        dlr: 0.0025,
        gamma: TrainOptions::auto_gamma(header.resolution, batch),
        pl_weight: 2.0,
        style_mixing: 0.9,
        ema_kimg: TrainOptions::auto_ema_kimg(batch),
        ema_rampup: Some(0.05),
        mbstd_group: 4,
        mirror: false,
        diffaug: "color,translation,cutout".into(),
        grid: 1,
        cv: None,
        stage: None,
        metrics: Vec::new(),
    };
    let dir = tempfile_dir();
    let device = vagan::util::parse_device("auto")?;
    let mut t = Trainer::new(opts, &dir, device, None)?;
    let mut stats = TickStats::default();
    for _ in 0..warmup {
        t.step(&mut stats)?;
    }
    let mut ms = Vec::new();
    for _ in 0..steps {
        let t0 = Instant::now();
        t.step(&mut stats)?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let mut sorted = ms.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = sorted.len();
    let median = (sorted[(n - 1) / 2] + sorted[n / 2]) / 2.0;
    let total: f64 = ms.iter().sum();
    let out = serde_json::json!({
        "impl": "vagan",
        "threads": threads,
        "device": format!("{device:?}"),
        "resolution": header.resolution,
        "batch": batch,
        "config": {"cbase": cbase, "cmax": cmax, "z_dim": zdim, "w_dim": zdim},
        "step_ms": ms,
        "median_step_ms": median,
        "img_per_s": batch as f64 * 1000.0 / median,
        "img_per_s_mean": (batch * steps) as f64 * 1000.0 / total,
        "peak_rss_gb": vagan::train::peak_rss_gb(),
    });
    std::fs::write(&a[8], serde_json::to_string_pretty(&out)?)?;
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "vagan: {:.2} img/s (median step), {:.2} img/s (mean)",
        out["img_per_s"], out["img_per_s_mean"]
    );
    Ok(())
}

fn tempfile_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vagan-bench-{}", std::process::id()))
}
