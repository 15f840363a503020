//! `vagan generate`: images from a snapshot's G_ema for given seeds.
use crate::nets::NoiseMode;
use crate::train::snapshot::Snapshot;
use anyhow::{bail, ensure, Context, Result};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Parses `0-63`, `1,5,9` or `0-3,10` into a list of seeds.
///
/// ```
/// use vagan::generate::parse_seeds;
/// assert_eq!(parse_seeds("0-3,10").unwrap(), [0, 1, 2, 3, 10]);
/// assert!(parse_seeds("5-2").is_err());
/// ```
pub fn parse_seeds(s: &str) -> Result<Vec<u64>> {
    let mut seeds = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let parsed = match part.split_once('-') {
            Some((a, b)) => a
                .trim()
                .parse::<u64>()
                .and_then(|a| b.trim().parse::<u64>().map(|b| (a, b)))
                .map(|(a, b)| a..=b),
            None => part.trim().parse::<u64>().map(|a| a..=a),
        };
        let range = parsed
            .with_context(|| format!("--seeds {s}: '{part}' is not a number or a range a-b"))?;
        ensure!(!range.is_empty(), "--seeds {s}: empty range '{part}'");
        seeds.extend(range);
    }
    if seeds.is_empty() {
        bail!("--seeds {s}: no seeds");
    }
    Ok(seeds)
}

/// The latent of one seed: z ~ N(0, I) from a CPU generator seeded with it, so the same seed
/// gives the same image on every device.
pub fn latent(seed: u64, z_dim: i64) -> Tensor {
    tch::manual_seed(seed as i64);
    Tensor::randn([1, z_dim], (Kind::Float, Device::Cpu))
}

/// Images in [-1, 1] for `seeds`, computed in batches.
pub fn generate(
    snapshot: &Snapshot,
    seeds: &[u64],
    truncation_psi: f64,
    noise: NoiseMode,
    device: Device,
) -> Result<Tensor> {
    let (_vs, g) = snapshot.generator_ema(device)?;
    let z: Vec<Tensor> = seeds.iter().map(|&s| latent(s, g.cfg.z_dim)).collect();
    let z = Tensor::cat(&z, 0).to_device(device);
    tch::no_grad(|| {
        let out: Vec<Tensor> = z
            .split(64, 0)
            .iter()
            .map(|z| g.forward(z, truncation_psi, noise).to_device(Device::Cpu))
            .collect();
        Ok(Tensor::cat(&out, 0))
    })
}

/// Writes `seed%04d.png` for every seed into `outdir`, and optionally a grid.
pub fn write_images(
    images: &Tensor,
    seeds: &[u64],
    outdir: &Path,
    grid: Option<&Path>,
) -> Result<()> {
    std::fs::create_dir_all(outdir)
        .with_context(|| format!("cannot create {}", outdir.display()))?;
    for (i, seed) in seeds.iter().enumerate() {
        crate::images::save_image(
            &images.get(i as i64),
            &outdir.join(format!("seed{seed:04}.png")),
        )?;
    }
    if let Some(g) = grid {
        let cols = (seeds.len() as f64).sqrt().ceil() as i64;
        crate::images::save_grid(images, cols, g)?;
    }
    Ok(())
}
