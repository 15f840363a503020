//! `vagan dataset`: any image source → one dataset file of square uint8 images.
use super::sources::{self, ImageSource};
use super::{DatasetHeader, MAGIC};
use crate::util::{write_atomic, SplitMix64};
use anyhow::{bail, ensure, Context, Result};
use image::imageops::FilterType;
use image::DynamicImage;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::str::FromStr;

/// How a non-square image becomes square before it is resized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transform {
    /// Keep the central square of side min(width, height).
    CenterCrop,
    /// Pad with black to a square of side max(width, height), image centred.
    Pad,
    /// Resize both sides to the resolution, ignoring the aspect ratio.
    Stretch,
}

impl FromStr for Transform {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "center-crop" => Ok(Self::CenterCrop),
            "pad" => Ok(Self::Pad),
            "stretch" => Ok(Self::Stretch),
            _ => bail!("--transform {s}: expected center-crop, pad or stretch"),
        }
    }
}

impl std::fmt::Display for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CenterCrop => "center-crop",
            Self::Pad => "pad",
            Self::Stretch => "stretch",
        })
    }
}

#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub resolution: u32,
    pub transform: Transform,
    /// Keep a deterministic random subset of this many images (the limited-data setting).
    pub max_images: Option<usize>,
    pub seed: u64,
    /// 1 or 3; `None` keeps colour unless every image is single-channel.
    pub channels: Option<u8>,
    /// Skip unreadable files (and count them) instead of stopping at the first one.
    pub skip_bad: bool,
}

impl ConvertOptions {
    /// Every image, centre-cropped, channels as found, stopping at the first bad file.
    pub fn new(resolution: u32) -> Self {
        Self {
            resolution,
            transform: Transform::CenterCrop,
            max_images: None,
            seed: 0,
            channels: None,
            skip_bad: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConvertReport {
    pub written: usize,
    pub skipped: usize,
    pub first_skipped: Option<String>,
    pub header: DatasetHeader,
}

fn square(img: DynamicImage, resolution: u32, transform: Transform) -> DynamicImage {
    let (w, h) = (img.width(), img.height());
    let img = match transform {
        Transform::CenterCrop => {
            let s = w.min(h);
            img.crop_imm((w - s) / 2, (h - s) / 2, s, s)
        }
        Transform::Pad => {
            let s = w.max(h);
            let mut canvas = DynamicImage::new(s, s, img.color());
            image::imageops::overlay(
                &mut canvas,
                &img,
                ((s - w) / 2) as i64,
                ((s - h) / 2) as i64,
            );
            canvas
        }
        Transform::Stretch => img,
    };
    if img.width() == resolution && img.height() == resolution {
        img
    } else {
        img.resize_exact(resolution, resolution, FilterType::Lanczos3)
    }
}

/// Square image → CHW uint8 with `channels` channels.
fn to_chw(img: &DynamicImage, channels: u8) -> Vec<u8> {
    if channels == 1 {
        return img.to_luma8().into_raw();
    }
    let rgb = img.to_rgb8();
    let hw = (rgb.width() * rgb.height()) as usize;
    let mut out = vec![0u8; 3 * hw];
    for (p, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            out[c * hw + p] = px.0[c];
        }
    }
    out
}

pub fn convert(source: &Path, dest: &Path, opts: &ConvertOptions) -> Result<ConvertReport> {
    ensure!(
        opts.resolution >= 4,
        "--resolution {}: must be at least 4",
        opts.resolution
    );
    if let Some(c) = opts.channels {
        ensure!(c == 1 || c == 3, "--channels {c}: expected 1 or 3");
    }
    let mut src = sources::open(source)?;
    ensure!(
        !src.is_empty(),
        "--source {}: no images found (supported: png, jpg, webp, bmp, IDX)",
        source.display()
    );
    let channels = opts.channels.unwrap_or(if src.is_grey() { 1 } else { 3 });
    let order: Vec<usize> = match opts.max_images {
        Some(n) if n < src.len() => SplitMix64::new(opts.seed).permutation(src.len()),
        _ => (0..src.len()).collect(),
    };
    let wanted = opts.max_images.unwrap_or(usize::MAX).min(src.len());

    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = dest.with_file_name(format!(
        ".{}.pixels.tmp",
        dest.file_name().unwrap().to_string_lossy()
    ));
    let result = write_pixels(src.as_mut(), &order, wanted, channels, opts, &tmp);
    let assembled = result.and_then(|(stats, labels)| {
        let all_grey = stats.all_grey && opts.channels.is_none();
        let out_channels = if all_grey { 1 } else { channels as i64 };
        let res = opts.resolution as usize;
        let header = DatasetHeader {
            count: stats.written as i64,
            channels: out_channels,
            resolution: res as i64,
            has_labels: labels.is_some(),
            num_classes: labels
                .as_ref()
                .map_or(0, |l| l.iter().max().map_or(0, |m| m + 1)),
            source: source.display().to_string(),
            transform: opts.transform.to_string(),
        };
        let json = serde_json::to_vec(&header)?;
        write_atomic(dest, |f| {
            let mut w = BufWriter::new(f);
            w.write_all(MAGIC)?;
            w.write_all(&(json.len() as u64).to_le_bytes())?;
            w.write_all(&json)?;
            let mut r = BufReader::new(std::fs::File::open(&tmp)?);
            let plane = res * res;
            let mut img = vec![0u8; channels as usize * plane];
            for _ in 0..stats.written {
                r.read_exact(&mut img)?;
                // Grey images were stored as three equal planes: keep one.
                let keep = if all_grey { &img[..plane] } else { &img[..] };
                w.write_all(keep)?;
            }
            for l in labels.iter().flatten() {
                w.write_all(&l.to_le_bytes())?;
            }
            w.flush()?;
            Ok(())
        })?;
        Ok(ConvertReport {
            written: stats.written,
            skipped: stats.skipped,
            first_skipped: stats.first_skipped,
            header,
        })
    });
    let _ = std::fs::remove_file(&tmp);
    assembled
}

struct PixelStats {
    written: usize,
    skipped: usize,
    first_skipped: Option<String>,
    all_grey: bool,
}

fn write_pixels(
    src: &mut dyn ImageSource,
    order: &[usize],
    wanted: usize,
    channels: u8,
    opts: &ConvertOptions,
    tmp: &Path,
) -> Result<(PixelStats, Option<Vec<i64>>)> {
    let mut out = BufWriter::new(
        std::fs::File::create(tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
    );
    let mut stats = PixelStats {
        written: 0,
        skipped: 0,
        first_skipped: None,
        all_grey: true,
    };
    let mut labels = src.has_labels().then(Vec::new);
    for &i in order {
        if stats.written == wanted {
            break;
        }
        let img = match src.load(i) {
            Ok(img) => img,
            Err(e) if opts.skip_bad => {
                stats.skipped += 1;
                stats.first_skipped.get_or_insert_with(|| format!("{e:#}"));
                continue;
            }
            Err(e) => return Err(e.context("stopping (pass --skip-bad to skip unreadable files)")),
        };
        if let Some(l) = labels.as_mut() {
            let label = src
                .label(i)
                .with_context(|| format!("{}: no label in dataset.json", src.name(i)))?;
            l.push(label);
        }
        stats.all_grey &= !img.color().has_color();
        // Normalise depth and channels first (16-bit and alpha are handled here), then resize.
        let img = if channels == 1 {
            DynamicImage::ImageLuma8(img.to_luma8())
        } else {
            DynamicImage::ImageRgb8(img.to_rgb8())
        };
        out.write_all(&to_chw(
            &square(img, opts.resolution, opts.transform),
            channels,
        ))?;
        stats.written += 1;
    }
    out.flush()?;
    ensure!(
        stats.written > 0,
        "no readable images ({} skipped; first: {})",
        stats.skipped,
        stats.first_skipped.as_deref().unwrap_or("-")
    );
    Ok((stats, labels))
}
