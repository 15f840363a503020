//! Inception features of image sets: the feature extractor (resize, normalise, network) and the
//! sets it reads (image folders, dataset files, snapshots).
//!
//! Folders are read like clean-fid reads them: files sorted by path (recursively), the first N
//! when fewer are asked, each image converted to RGB as PIL's `convert('RGB')` does (grey
//! repeated, alpha dropped, palettes expanded). The differences: file extensions are matched in
//! any case and TIFF/PPM/PGM files are reported as unsupported instead of read (clean-fid also
//! reads `.npy` arrays, which are ignored here); a zip is read in sorted order (clean-fid's order
//! of zip entries is a set's, which only matters with `--num`); JPEG files are decoded by the
//! `image` crate, whose IDCT may differ from libjpeg's by a level in some pixels (8-bit PNG, as
//! in the parity fixtures, decodes identically).
use super::inception::InceptionV3;
use super::resize::{resize, Mode, INCEPTION_SIZE};
use super::stats::FeatureStats;
use crate::data::sources::{self, ImageSource};
use crate::data::Dataset;
use crate::train::snapshot::{self, Snapshot};
use crate::weights::cache::Cache;
use anyhow::{ensure, Context, Result};
use indicatif::ProgressBar;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// The name of the Inception's weights in the cache.
pub const INCEPTION_WEIGHTS: &str = "inception_fid";

/// Images → pool3 features, in one [`Mode`], on one device.
pub struct FeatureExtractor {
    // Owns the network's variables.
    _vs: VarStore,
    net: InceptionV3,
    mode: Mode,
    device: Device,
    weights_sha256: String,
}

/// Generator output in [-1, 1] → uint8 as [`crate::images::to_u8`] quantises it; uint8 images
/// pass unchanged.
pub fn quantize(images: &Tensor) -> Tensor {
    if images.kind() == Kind::Uint8 {
        images.shallow_clone()
    } else {
        crate::images::to_u8(images)
    }
}

impl FeatureExtractor {
    /// The Inception with the cached `inception_fid` weights (`vagan weights fetch inception_fid`).
    pub fn load(cache: &Cache, mode: Mode, device: Device) -> Result<Self> {
        let entry = cache
            .get(INCEPTION_WEIGHTS)?
            .with_context(|| {
                format!(
                    "the FID Inception is not in the weights cache {}: run `vagan weights fetch {INCEPTION_WEIGHTS}`",
                    cache.dir().display()
                )
            })?;
        let file = cache.dir().join(&entry.file);
        let mut vs = VarStore::new(device);
        let net = InceptionV3::new(vs.root() / "net" / "layers");
        vs.freeze();
        let (tensors, _) = crate::weights::load(&file)?;
        let tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
        crate::weights::load_into(&vs, &tensors, &file.display().to_string(), |_| false)?;
        crate::util::use_channels_last(&vs);
        Ok(Self {
            _vs: vs,
            net,
            mode,
            device,
            weights_sha256: entry.sha256,
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The sha256 of the original weights file (part of the statistics cache key).
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }

    /// uint8 images `[N, 1 or 3, H, W]` (any device) → the network input `[N, 3, 299, 299]` on
    /// the extractor's device: resized per the mode, then `(x − 128) / 128`.
    pub fn prepare(&self, images: &Tensor) -> Result<Tensor> {
        ensure!(
            images.kind() == Kind::Uint8,
            "the feature extractor takes uint8 images, got {:?} (see metrics::quantize)",
            images.kind()
        );
        let x = resize(&images.to_device(self.device), self.mode, INCEPTION_SIZE)?;
        Ok((x - 128.0) / 128.0)
    }

    /// Prepared inputs → `[N, 2048]` features (float32, on the extractor's device).
    pub fn network(&self, prepared: &Tensor) -> Tensor {
        tch::no_grad(|| self.net.forward(prepared))
    }

    /// uint8 images `[N, 1 or 3, H, W]` of one size → `[N, 2048]` features.
    pub fn features(&self, images: &Tensor) -> Result<Tensor> {
        Ok(self.network(&self.prepare(images)?))
    }
}

/// A set of images to measure.
pub enum ImageSet {
    /// An image folder (sorted by path, like clean-fid), a zip of images or an IDX file; every
    /// image converted to RGB as PIL's `convert('RGB')` does.
    Files {
        path: PathBuf,
        source: Box<dyn ImageSource>,
    },
    /// A dataset file (`vagan dataset`), in its order.
    Dataset { path: PathBuf, dataset: Dataset },
    /// A snapshot's G_ema: image i from the latent of seed i (as `vagan generate`), truncation 1,
    /// constant noise.
    Snapshot {
        path: PathBuf,
        snapshot: Box<Snapshot>,
    },
}

impl ImageSet {
    /// Opens a folder, zip or IDX file, a dataset file, a snapshot file, or a run directory (its
    /// latest snapshot). `flag` names the option in errors.
    pub fn open(path: &Path, flag: &str) -> Result<Self> {
        ensure!(
            path.exists(),
            "{flag} {}: no such file or folder",
            path.display()
        );
        let snapshot_file = if path.is_dir() {
            snapshot::latest(path).ok()
        } else {
            path.extension()
                .is_some_and(|e| e == "safetensors")
                .then(|| path.to_path_buf())
        };
        if let Some(file) = snapshot_file {
            let snapshot = Box::new(
                Snapshot::load(&file).with_context(|| format!("{flag} {}", path.display()))?,
            );
            return Ok(Self::Snapshot {
                path: file,
                snapshot,
            });
        }
        if path.is_file() && crate::data::read_header(path).is_ok() {
            let dataset = Dataset::open(path)?;
            return Ok(Self::Dataset {
                path: path.to_path_buf(),
                dataset,
            });
        }
        let source = sources::open(path).with_context(|| format!("{flag} {}", path.display()))?;
        Ok(Self::Files {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn path(&self) -> &Path {
        match self {
            Self::Files { path, .. } | Self::Dataset { path, .. } | Self::Snapshot { path, .. } => {
                path
            }
        }
    }

    /// How many images the set holds (`None`: a generator, as many as asked).
    pub fn available(&self) -> Option<usize> {
        match self {
            Self::Files { source, .. } => Some(source.len()),
            Self::Dataset { dataset, .. } => Some(dataset.len()),
            Self::Snapshot { .. } => None,
        }
    }

    /// `num` if given and available, else every image of a folder or dataset; a snapshot needs
    /// `num` or gets `default_generated`.
    pub fn count(&self, num: Option<usize>, default_generated: usize, flag: &str) -> Result<usize> {
        let what = match self {
            Self::Files { .. } => "image folder/archive",
            Self::Dataset { .. } => "dataset",
            Self::Snapshot { .. } => "snapshot",
        };
        match (num, self.available()) {
            (Some(n), Some(have)) if n > have => anyhow::bail!(
                "{} ({what}) holds {have} images, {n} asked (with {flag})",
                self.path().display()
            ),
            (Some(n), _) => Ok(n),
            (None, Some(have)) => Ok(have),
            (None, None) => Ok(default_generated),
        }
    }

    /// Features of the first `num` images into `stats`, `batch` images per network call.
    pub fn extract(
        &mut self,
        extractor: &FeatureExtractor,
        num: usize,
        batch: usize,
        stats: &mut FeatureStats,
        progress: &ProgressBar,
    ) -> Result<()> {
        ensure!(batch > 0, "--batch must be positive");
        let starts = (0..num).step_by(batch);
        match self {
            Self::Files { path, source } => {
                for start in starts {
                    let end = (start + batch).min(num);
                    let prepared = (start..end)
                        .map(|i| {
                            let image = source.load(i).with_context(|| {
                                format!("image {} of {num} in {}", i + 1, path.display())
                            })?;
                            extractor.prepare(&rgb_tensor(&image).unsqueeze(0))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    stats.add(&extractor.network(&Tensor::cat(&prepared, 0)));
                    progress.inc((end - start) as u64);
                }
            }
            Self::Dataset { dataset, .. } => {
                for start in starts {
                    let end = (start + batch).min(num);
                    let indices: Vec<i64> = (start as i64..end as i64).collect();
                    stats.add(&extractor.features(&dataset.images_u8(&indices))?);
                    progress.inc((end - start) as u64);
                }
            }
            Self::Snapshot { snapshot, .. } => {
                let (_vs, g) = snapshot.generator_ema(extractor.device())?;
                for start in starts {
                    let end = (start + batch).min(num);
                    let z: Vec<Tensor> = (start..end)
                        .map(|seed| crate::generate::latent(seed as u64, g.cfg.z_dim))
                        .collect();
                    let z = Tensor::cat(&z, 0).to_device(extractor.device());
                    let images = tch::no_grad(|| g.forward(&z, 1.0, crate::nets::NoiseMode::Const));
                    stats.add(&extractor.features(&quantize(&images))?);
                    progress.inc((end - start) as u64);
                }
            }
        }
        Ok(())
    }
}

/// A decoded image as uint8 `[3, H, W]`, converted to RGB like PIL's `convert('RGB')` (grey
/// repeated, alpha dropped).
fn rgb_tensor(image: &image::DynamicImage) -> Tensor {
    let rgb = image.to_rgb8();
    let (w, h) = rgb.dimensions();
    Tensor::from_slice(rgb.as_raw())
        .view([h as i64, w as i64, 3])
        .permute([2, 0, 1])
}
