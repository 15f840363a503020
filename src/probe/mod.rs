//! Linear-probe model selection (reference §6.1): how well do a frozen network's pooled
//! features separate real images from the current generator's? For each candidate, pooled
//! features of up to N real images (dataset order, no flip) and N fakes of G_ema (truncation
//! 1), then 3 times: fresh random 50/50 train/validation halves of each, an L2-regularised
//! logistic regression (C = 0.2, fitted to the optimum), validation accuracy. The network with
//! the best mean accuracy joins the ensemble next.
pub mod logistic;

use crate::backbones::bank::Backbone;
use crate::data::Dataset;
use crate::nets::{Generator, NoiseMode};
use crate::util::SplitMix64;
use crate::weights::cache::Cache;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOptions {
    /// Real images (and as many fakes) per network: the reference's cap, about 10,000.
    pub num_images: usize,
    /// Images per backbone call.
    pub batch: usize,
    /// Train/validation splits averaged.
    pub repeats: usize,
    /// The inverse regularisation strength of the logistic regression.
    pub c: f64,
    /// Seeds the fakes' latents and the splits.
    pub seed: u64,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            num_images: 10_000,
            batch: 64,
            repeats: 3,
            c: 0.2,
            seed: 0,
        }
    }
}

/// One network's probe result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub network: String,
    /// Mean and standard deviation (population) of the validation accuracies.
    pub mean_accuracy: f64,
    pub std_accuracy: f64,
    pub accuracies: Vec<f64>,
    pub num_real: usize,
    pub num_fake: usize,
    /// Features and fits.
    pub seconds: f64,
}

/// The pooled features `[n, d]` (f32, on the CPU) of `n` images produced batch by batch.
fn pooled_features(
    backbone: &Backbone,
    n: usize,
    batch: usize,
    mut images: impl FnMut(usize, usize) -> Tensor,
) -> Tensor {
    let chunks: Vec<Tensor> = (0..n)
        .step_by(batch)
        .map(|start| {
            let count = batch.min(n - start);
            tch::no_grad(|| {
                backbone
                    .forward(&images(start, count).to_device(backbone.device()))
                    .pooled
                    .to_device(Device::Cpu)
                    .to_kind(Kind::Float)
            })
        })
        .collect();
    Tensor::cat(&chunks, 0)
}

/// A random permutation of `0..n` from `rng`.
fn permutation(n: usize, rng: &mut SplitMix64) -> Tensor {
    let mut p: Vec<i64> = (0..n as i64).collect();
    for i in (1..n).rev() {
        p.swap(i, rng.below(i as u64 + 1) as usize);
    }
    Tensor::from_slice(&p)
}

/// Validation accuracies of `repeats` fits on fresh halves of `real` and `fake` features.
pub fn split_accuracies(real: &Tensor, fake: &Tensor, opts: &ProbeOptions) -> Result<Vec<f64>> {
    let (nr, nf) = (real.size()[0] as usize, fake.size()[0] as usize);
    ensure!(
        nr >= 4 && nf >= 4,
        "the probe needs at least 4 real and 4 fake images"
    );
    let mut rng = SplitMix64::new(crate::util::derive_seed(opts.seed, u64::MAX - 4));
    (0..opts.repeats)
        .map(|_| {
            let pr = permutation(nr, &mut rng);
            let pf = permutation(nf, &mut rng);
            let (hr, hf) = ((nr / 2) as i64, (nf / 2) as i64);
            let half = |x: &Tensor, p: &Tensor, h: i64, train: bool| {
                let idx = if train {
                    p.narrow(0, 0, h)
                } else {
                    p.narrow(0, h, p.size()[0] - h)
                };
                x.index_select(0, &idx)
            };
            let labels = |r: i64, f: i64| {
                Tensor::cat(
                    &[
                        Tensor::ones([r], (Kind::Float, Device::Cpu)),
                        Tensor::zeros([f], (Kind::Float, Device::Cpu)),
                    ],
                    0,
                )
            };
            let train_x = Tensor::cat(&[half(real, &pr, hr, true), half(fake, &pf, hf, true)], 0);
            let val_x = Tensor::cat(&[half(real, &pr, hr, false), half(fake, &pf, hf, false)], 0);
            let model = logistic::fit(&train_x, &labels(hr, hf), opts.c)?;
            Ok(model.accuracy(&val_x, &labels(nr as i64 - hr, nf as i64 - hf)))
        })
        .collect()
}

/// Probes one network: features of the first `min(N, len)` dataset images and as many G_ema
/// fakes (latents drawn from `opts.seed`), then [`split_accuracies`].
pub fn probe(
    backbone: &Backbone,
    dataset: &Dataset,
    g_ema: &Generator,
    opts: &ProbeOptions,
) -> Result<ProbeResult> {
    let start = Instant::now();
    let n = opts.num_images.min(dataset.len());
    ensure!(
        n >= 4,
        "the probe needs at least 4 images, the dataset has {}",
        dataset.len()
    );
    let device = backbone.device();
    let real = pooled_features(backbone, n, opts.batch, |s, c| {
        let idx: Vec<i64> = (s as i64..(s + c) as i64).collect();
        dataset.images_u8(&idx).to_kind(Kind::Float) / 127.5 - 1.0
    });
    let z_dim = g_ema.cfg.z_dim;
    tch::manual_seed(crate::util::derive_seed(opts.seed, u64::MAX - 3) as i64);
    let fake = pooled_features(backbone, n, opts.batch, |_, c| {
        let z = Tensor::randn([c as i64, z_dim], (Kind::Float, Device::Cpu)).to_device(device);
        tch::no_grad(|| g_ema.forward(&z, 1.0, NoiseMode::Random))
    });
    let accuracies = split_accuracies(&real, &fake, opts)?;
    let mean = accuracies.iter().sum::<f64>() / accuracies.len() as f64;
    let var = accuracies.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / accuracies.len() as f64;
    Ok(ProbeResult {
        network: backbone.name.to_string(),
        mean_accuracy: mean,
        std_accuracy: var.sqrt(),
        accuracies,
        num_real: n,
        num_fake: n,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Probes each of `networks` (weights from `cache`) on `g_ema` and `dataset`, reporting each
/// result as it comes, and returns them best first. Backbones are loaded one at a time.
pub fn select(
    networks: &[&str],
    cache: &Cache,
    dataset: &Dataset,
    g_ema: &Generator,
    opts: &ProbeOptions,
    device: Device,
    mut on_result: impl FnMut(&ProbeResult),
) -> Result<Vec<ProbeResult>> {
    ensure!(!networks.is_empty(), "no networks to probe");
    let mut results = Vec::with_capacity(networks.len());
    for name in networks {
        let backbone =
            Backbone::load(name, cache, device).with_context(|| format!("probing '{name}'"))?;
        let r = probe(&backbone, dataset, g_ema, opts)?;
        on_result(&r);
        results.push(r);
    }
    Ok(rank(results))
}

/// Ranks results best first (highest mean accuracy; ties keep the bank's order).
pub fn rank(mut results: Vec<ProbeResult>) -> Vec<ProbeResult> {
    results.sort_by(|a, b| b.mean_accuracy.total_cmp(&a.mean_accuracy));
    results
}
