//! Forward plus input-gradient throughput of a frozen backbone (what the generator step of
//! vision-aided training costs), in the JSON shape of bench/reference_backbone.py.
//!
//! cargo run --release --example bench_backbone -- NAME BATCH INPUT_RES STEPS WARMUP THREADS OUT.json
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use vagan::backbones::bank::Backbone;

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        a.len() == 7,
        "usage: bench_backbone NAME BATCH INPUT_RES STEPS WARMUP THREADS OUT.json"
    );
    let p = |i: usize| a[i].parse::<i64>().unwrap();
    let (batch, res, steps, warmup, threads) = (p(1), p(2), p(3), p(4), p(5));
    tch::set_num_threads(threads as i32);
    tch::manual_seed(0);
    let net = Backbone::random(&a[0], Device::Cpu)?;
    let images = Tensor::rand([batch, 3, res, res], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let step = || {
        let x = images.detach().set_requires_grad(true);
        // Every output a head or the probe reads, summed: one input-gradient pass.
        let out = net.forward(&x);
        let total = out
            .maps
            .iter()
            .fold(out.pooled.sum(None::<Kind>), |acc, m| {
                acc + m.sum(None::<Kind>)
            });
        let g = Tensor::run_backward(&[total], &[&x], false, false);
        assert!(g[0].defined());
    };
    for _ in 0..warmup {
        step();
    }
    let ms: Vec<f64> = (0..steps)
        .map(|_| {
            let t0 = Instant::now();
            step();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let mut sorted = ms.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = sorted.len();
    let median = (sorted[(n - 1) / 2] + sorted[n / 2]) / 2.0;
    let out = serde_json::json!({
        "impl": "vagan", "backbone": a[0], "threads": threads, "batch": batch, "input_res": res,
        "step_ms": ms, "median_step_ms": median,
        "img_per_s": batch as f64 * 1000.0 / median,
        "img_per_s_mean": (batch * steps) as f64 * 1000.0 / ms.iter().sum::<f64>(),
        "peak_rss_gb": vagan::train::peak_rss_gb(),
    });
    std::fs::write(&a[6], serde_json::to_string_pretty(&out)?)?;
    println!("vagan {}: {:.2} img/s", a[0], out["img_per_s"]);
    Ok(())
}
