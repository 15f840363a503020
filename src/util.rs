//! Small helpers shared by several modules: atomic file writes, a seedable integer RNG, devices.
use anyhow::{Context, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes a file so that readers only ever see the old or the complete new version: the data
/// goes to a hidden temporary file in the same directory, is flushed to disk, then renamed.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp: PathBuf = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut f = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    write(&mut f).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.flush()?;
    f.sync_all()
        .with_context(|| format!("cannot sync {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    // Make the rename itself durable.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// SplitMix64: a tiny, fully specified generator, so that data order and subsets are the same
/// on every platform and every version of every dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform integer in [0, n) (n > 0), by rejection so that there is no modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// A random permutation of 0..n (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }
}

/// Combines a seed with a counter into a new independent seed (used to reseed per step).
pub fn derive_seed(seed: u64, counter: u64) -> u64 {
    let mut r = SplitMix64::new(seed ^ counter.wrapping_mul(0xD1B5_4A32_D192_ED03));
    r.next_u64()
}

/// `auto` picks CUDA when libtorch sees a GPU.
pub fn parse_device(s: &str) -> Result<tch::Device> {
    match s {
        "auto" => Ok(tch::Device::cuda_if_available()),
        "cpu" => Ok(tch::Device::Cpu),
        "cuda" => {
            anyhow::ensure!(
                tch::Cuda::is_available(),
                "--device cuda: libtorch sees no CUDA device"
            );
            Ok(tch::Device::Cuda(0))
        }
        s => match s
            .strip_prefix("cuda:")
            .and_then(|i| i.parse::<usize>().ok())
        {
            Some(i) => Ok(tch::Device::Cuda(i)),
            None => anyhow::bail!("--device {s}: expected auto, cpu, cuda or cuda:N"),
        },
    }
}

/// Stores every 4-D variable of `vs` in channels-last (NHWC) layout. Convolutions then run
/// in oneDNN's native layout on the CPU (measured 12-22% faster on the 64×64 GAN, 22-36% on VGG-16 and EfficientNet-Lite0), and
/// the layout propagates to the activations; the values and shapes are unchanged.
pub fn use_channels_last(vs: &tch::nn::VarStore) {
    for (_, mut v) in vs.variables() {
        if v.dim() == 4 {
            let nhwc = v.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
            v.set_data(&nhwc);
        }
    }
}
