//! Helpers shared by the integration tests: tiny data sets and tiny training options.
#![allow(dead_code)]
use std::io::Write;
use std::path::{Path, PathBuf};
use vagan::data::convert::{convert, ConvertOptions};
use vagan::train::TrainOptions;

/// Writes an MNIST-format IDX image file of `n` random `size`×`size` images.
pub fn write_idx(path: &Path, n: usize, size: usize, seed: u64) {
    let mut rng = vagan::util::SplitMix64::new(seed);
    let mut data = vec![0u8, 0, 8, 3];
    for v in [n, size, size] {
        data.extend_from_slice(&(v as u32).to_be_bytes());
    }
    data.extend((0..n * size * size).map(|_| rng.below(256) as u8));
    std::fs::File::create(path)
        .unwrap()
        .write_all(&data)
        .unwrap();
}

/// A dataset file of `n` random grey images at `res`×`res`, in `dir`.
pub fn tiny_dataset(dir: &Path, n: usize, res: u32) -> PathBuf {
    let idx = dir.join("images-idx3-ubyte");
    write_idx(&idx, n, res as usize, 7);
    let dest = dir.join("tiny.vds");
    convert(&idx, &dest, &ConvertOptions::new(res)).unwrap();
    dest
}

/// Every regulariser on, tiny networks: a few steps take well under a second on a CPU.
pub fn tiny_options(data: PathBuf) -> TrainOptions {
    TrainOptions {
        data,
        kimg: 0.08,
        batch: 4,
        tick_kimg: 0.04,
        snap: 1,
        seed: 3,
        cbase: 64,
        cmax: 16,
        z_dim: 8,
        w_dim: 8,
        map_layers: 2,
        glr: 0.002,
        dlr: 0.002,
        gamma: 1.0,
        pl_weight: 2.0,
        style_mixing: 0.9,
        ema_kimg: 0.01,
        ema_rampup: Some(0.05),
        mbstd_group: 4,
        mirror: true,
        diffaug: "color,translation,cutout".into(),
        grid: 2,
    }
}
