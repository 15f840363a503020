//! Training data: the dataset file format, the converters that make it, and the sampler.
//!
//! A dataset file is `VAGANDS1`, a little-endian u64 header length, a JSON header
//! ([`DatasetHeader`]), then the pixels as uint8 NCHW and, when present, one i64 label per
//! image. Training maps the file and copies only each minibatch.
pub mod convert;
pub mod sources;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub const MAGIC: &[u8; 8] = b"VAGANDS1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetHeader {
    pub count: i64,
    pub channels: i64,
    pub resolution: i64,
    pub has_labels: bool,
    pub num_classes: i64,
    /// Where the images came from and how they were made (for the user's records).
    pub source: String,
    pub transform: String,
}

impl DatasetHeader {
    fn pixel_bytes(&self) -> i64 {
        self.count * self.channels * self.resolution * self.resolution
    }
}

/// A dataset file opened for training: pixels and labels stay in the (memory-mapped) file.
#[derive(Debug)]
pub struct Dataset {
    pub header: DatasetHeader,
    images: Tensor,
    labels: Option<Tensor>,
}

pub fn read_header(path: &Path) -> Result<(DatasetHeader, u64)> {
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("cannot open dataset {}", path.display()))?;
    let mut magic = [0u8; 16];
    f.read_exact(&mut magic)
        .ok()
        .filter(|_| &magic[..8] == MAGIC)
        .with_context(|| {
            format!(
                "{} is not a vagan dataset file (make one with `vagan dataset`)",
                path.display()
            )
        })?;
    let len = u64::from_le_bytes(magic[8..].try_into().unwrap());
    ensure!(
        len < 1 << 30,
        "{}: header length {len} is not plausible",
        path.display()
    );
    let mut json = vec![0u8; len as usize];
    f.read_exact(&mut json)
        .with_context(|| format!("{}: truncated header", path.display()))?;
    let header: DatasetHeader = serde_json::from_slice(&json)
        .with_context(|| format!("{}: malformed header", path.display()))?;
    Ok((header, 16 + len))
}

impl Dataset {
    pub fn open(path: &Path) -> Result<Self> {
        let (header, offset) = read_header(path)?;
        let h = &header;
        ensure!(
            h.count > 0,
            "{}: the dataset holds no images",
            path.display()
        );
        ensure!(
            h.channels == 1 || h.channels == 3,
            "{}: {} channels (expected 1 or 3)",
            path.display(),
            h.channels
        );
        let expected = offset as i64 + h.pixel_bytes() + if h.has_labels { 8 * h.count } else { 0 };
        let actual = std::fs::metadata(path)?.len() as i64;
        if actual != expected {
            bail!(
                "{}: file is {actual} bytes, its header promises {expected} (truncated or corrupt)",
                path.display()
            );
        }
        let name = path
            .to_str()
            .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
        let all = Tensor::from_file(name, false, Some(actual), (Kind::Uint8, Device::Cpu));
        let images = all.narrow(0, offset as i64, h.pixel_bytes()).view([
            h.count,
            h.channels,
            h.resolution,
            h.resolution,
        ]);
        let labels = h.has_labels.then(|| {
            let bytes = all.narrow(0, offset as i64 + h.pixel_bytes(), 8 * h.count);
            let mut v = vec![0u8; (8 * h.count) as usize];
            let n = v.len();
            bytes.copy_data(&mut v, n);
            let l: Vec<i64> = v
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            Tensor::from_slice(&l)
        });
        Ok(Self {
            header,
            images,
            labels,
        })
    }

    pub fn len(&self) -> usize {
        self.header.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.header.count == 0
    }

    /// Raw uint8 images [N, C, H, W] for the given indices.
    pub fn images_u8(&self, indices: &[i64]) -> Tensor {
        self.images.index_select(0, &Tensor::from_slice(indices))
    }

    pub fn labels(&self, indices: &[i64]) -> Option<Tensor> {
        self.labels
            .as_ref()
            .map(|l| l.index_select(0, &Tensor::from_slice(indices)))
    }

    /// A minibatch as float images in [-1, 1] on `device`.
    pub fn batch(&self, items: &[Item], device: Device) -> Tensor {
        let idx: Vec<i64> = items.iter().map(|i| i.index as i64).collect();
        let x = self.images_u8(&idx).to_device(device).to_kind(Kind::Float) / 127.5 - 1.0;
        let flip: Vec<bool> = items.iter().map(|i| i.flip).collect();
        if flip.iter().any(|&f| f) {
            let mask = Tensor::from_slice(&flip)
                .to_device(device)
                .reshape([-1, 1, 1, 1]);
            x.flip([3]).where_self(&mask, &x)
        } else {
            x
        }
    }
}

/// One image drawn by the sampler: its index and whether it is mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    pub index: usize,
    pub flip: bool,
}

/// An endless shuffled stream over the dataset (doubled by mirrors with `xflip`), in epochs.
/// The k-th image drawn is a pure function of (seed, k), which makes resuming exact.
#[derive(Debug)]
pub struct Sampler {
    len: usize,
    xflip: bool,
    seed: u64,
    epoch: Option<(u64, Vec<usize>)>,
}

impl Sampler {
    pub fn new(len: usize, xflip: bool, seed: u64) -> Self {
        Self {
            len,
            xflip,
            seed,
            epoch: None,
        }
    }

    fn virtual_len(&self) -> usize {
        if self.xflip {
            2 * self.len
        } else {
            self.len
        }
    }

    /// The `count` images starting at position `start` of the stream.
    pub fn take(&mut self, start: u64, count: usize) -> Vec<Item> {
        let n = self.virtual_len() as u64;
        (start..start + count as u64)
            .map(|k| {
                let epoch = k / n;
                if self.epoch.as_ref().map(|e| e.0) != Some(epoch) {
                    let mut rng =
                        crate::util::SplitMix64::new(crate::util::derive_seed(self.seed, epoch));
                    self.epoch = Some((epoch, rng.permutation(n as usize)));
                }
                let v = self.epoch.as_ref().unwrap().1[(k % n) as usize];
                Item {
                    index: v % self.len,
                    flip: v >= self.len,
                }
            })
            .collect()
    }
}
