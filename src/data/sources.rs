//! Where images come from: an image folder, a zip of images, or an MNIST-format IDX file.
use anyhow::{bail, ensure, Context, Result};
use image::DynamicImage;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "bmp"];
/// Image formats a user may expect to work; they are reported as unsupported, not ignored.
const UNSUPPORTED_IMAGE_EXTENSIONS: &[&str] = &[
    "gif", "tif", "tiff", "ppm", "pgm", "pbm", "heic", "avif", "ico", "svg",
];

fn extension(name: &str) -> String {
    Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

fn is_listed(name: &str) -> bool {
    let e = extension(name);
    IMAGE_EXTENSIONS.contains(&e.as_str()) || UNSUPPORTED_IMAGE_EXTENSIONS.contains(&e.as_str())
}

fn decode(name: &str, bytes: &[u8]) -> Result<DynamicImage> {
    let ext = extension(name);
    ensure!(
        IMAGE_EXTENSIONS.contains(&ext.as_str()),
        "{name}: unsupported image format '.{ext}' (supported: png, jpg, webp, bmp)"
    );
    image::load_from_memory(bytes).with_context(|| format!("{name}: cannot decode image"))
}

/// A numbered collection of images with optional integer labels.
pub trait ImageSource {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A name that identifies image `i` to the user (a path, a zip entry, `file[index]`).
    fn name(&self, i: usize) -> String;
    fn load(&mut self, i: usize) -> Result<DynamicImage>;
    fn label(&self, i: usize) -> Option<i64>;
    fn has_labels(&self) -> bool;
    /// True when every image is single-channel by construction (IDX files).
    fn is_grey(&self) -> bool {
        false
    }
}

/// Opens `path` as a folder, a `.zip`, or an IDX file (gzipped or not).
pub fn open(path: &Path) -> Result<Box<dyn ImageSource>> {
    ensure!(
        path.exists(),
        "--source {}: no such file or folder",
        path.display()
    );
    if path.is_dir() {
        return Ok(Box::new(FolderSource::open(path)?));
    }
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .with_context(|| format!("cannot read {}", path.display()))?;
    match head {
        [b'P', b'K', 3, 4] | [b'P', b'K', 5, 6] => Ok(Box::new(ZipSource::open(path)?)),
        [0x1f, 0x8b, _, _] | [0, 0, 8, 3] => Ok(Box::new(IdxSource::open(path)?)),
        _ => bail!(
            "{}: not a folder, a zip or an IDX image file (IDX magic 0x00000803, optionally gzipped)",
            path.display()
        ),
    }
}

/// Labels from a StyleGAN2-ADA style `dataset.json`: {"labels": [["relative/path.png", 3], ...]}.
fn parse_labels(json: &[u8], origin: &str) -> Result<HashMap<String, i64>> {
    #[derive(serde::Deserialize)]
    struct File {
        labels: Option<Vec<(String, i64)>>,
    }
    let f: File = serde_json::from_slice(json)
        .with_context(|| format!("{origin}: malformed dataset.json"))?;
    Ok(f.labels
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.replace('\\', "/"), v))
        .collect())
}

fn label_of(labels: &HashMap<String, i64>, names: &[String], i: usize) -> Option<i64> {
    if labels.is_empty() {
        None
    } else {
        labels.get(&names[i]).copied()
    }
}

pub struct FolderSource {
    root: PathBuf,
    files: Vec<String>,
    labels: HashMap<String, i64>,
}

impl FolderSource {
    fn open(root: &Path) -> Result<Self> {
        let mut files = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in
                std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
            {
                let p = entry?.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    if is_listed(&rel) {
                        files.push(rel);
                    }
                }
            }
        }
        files.sort();
        let json = root.join("dataset.json");
        let labels = if json.exists() {
            parse_labels(&std::fs::read(&json)?, &json.display().to_string())?
        } else {
            HashMap::new()
        };
        Ok(Self {
            root: root.to_path_buf(),
            files,
            labels,
        })
    }
}

impl ImageSource for FolderSource {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn name(&self, i: usize) -> String {
        self.root.join(&self.files[i]).display().to_string()
    }
    fn load(&mut self, i: usize) -> Result<DynamicImage> {
        let name = self.name(i);
        let bytes = std::fs::read(self.root.join(&self.files[i]))
            .with_context(|| format!("cannot read {name}"))?;
        decode(&name, &bytes)
    }
    fn label(&self, i: usize) -> Option<i64> {
        label_of(&self.labels, &self.files, i)
    }
    fn has_labels(&self) -> bool {
        !self.labels.is_empty()
    }
}

pub struct ZipSource {
    path: PathBuf,
    archive: zip::ZipArchive<std::fs::File>,
    entries: Vec<String>,
    labels: HashMap<String, i64>,
}

impl ZipSource {
    fn open(path: &Path) -> Result<Self> {
        let f =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut archive =
            zip::ZipArchive::new(f).with_context(|| format!("{}: corrupt zip", path.display()))?;
        let mut entries: Vec<String> = archive
            .file_names()
            .filter(|n| !n.ends_with('/') && is_listed(n))
            .map(String::from)
            .collect();
        entries.sort();
        let labels = match archive.by_name("dataset.json") {
            Ok(mut e) => {
                let mut json = Vec::new();
                e.read_to_end(&mut json)?;
                parse_labels(&json, &format!("{}:dataset.json", path.display()))?
            }
            Err(_) => HashMap::new(),
        };
        Ok(Self {
            path: path.to_path_buf(),
            archive,
            entries,
            labels,
        })
    }
}

impl ImageSource for ZipSource {
    fn len(&self) -> usize {
        self.entries.len()
    }
    fn name(&self, i: usize) -> String {
        format!("{}:{}", self.path.display(), self.entries[i])
    }
    fn load(&mut self, i: usize) -> Result<DynamicImage> {
        let name = self.name(i);
        let mut bytes = Vec::new();
        self.archive
            .by_name(&self.entries[i])
            .map_err(anyhow::Error::from)
            .and_then(|mut e| Ok(e.read_to_end(&mut bytes)?))
            .with_context(|| format!("{name}: cannot read zip entry"))?;
        decode(&name, &bytes)
    }
    fn label(&self, i: usize) -> Option<i64> {
        label_of(&self.labels, &self.entries, i)
    }
    fn has_labels(&self) -> bool {
        !self.labels.is_empty()
    }
}

/// MNIST-format images (magic 2051: count, rows, cols, then bytes), with the labels of the
/// sibling `*labels-idx1*` file when it exists.
pub struct IdxSource {
    path: PathBuf,
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
    labels: Option<Vec<u8>>,
}

fn read_maybe_gzipped(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: corrupt gzip data", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

impl IdxSource {
    fn open(path: &Path) -> Result<Self> {
        let data = read_maybe_gzipped(path)?;
        ensure!(
            data.len() >= 16 && data[..4] == [0, 0, 8, 3],
            "{}: not an IDX image file (expected magic 0x00000803 for uint8 images of rank 3)",
            path.display()
        );
        let (n, rows, cols) = (be_u32(&data, 4), be_u32(&data, 8), be_u32(&data, 12));
        ensure!(
            data.len() == 16 + n * rows * cols,
            "{}: header says {n} images of {rows}×{cols} but the file holds {} pixel bytes",
            path.display(),
            data.len() - 16
        );
        let labels = Self::sibling_labels(path, n)?;
        Ok(Self {
            path: path.to_path_buf(),
            rows,
            cols,
            pixels: data[16..].to_vec(),
            labels,
        })
    }

    fn sibling_labels(path: &Path, n: usize) -> Result<Option<Vec<u8>>> {
        let name = path.file_name().unwrap().to_string_lossy();
        if !name.contains("images-idx3") {
            return Ok(None);
        }
        let lp = path.with_file_name(name.replace("images-idx3", "labels-idx1"));
        if !lp.exists() {
            return Ok(None);
        }
        let data = read_maybe_gzipped(&lp)?;
        ensure!(
            data.len() >= 8
                && data[..4] == [0, 0, 8, 1]
                && be_u32(&data, 4) == n
                && data.len() == 8 + n,
            "{}: not an IDX label file for {n} images",
            lp.display()
        );
        Ok(Some(data[8..].to_vec()))
    }
}

impl ImageSource for IdxSource {
    fn len(&self) -> usize {
        self.pixels.len() / (self.rows * self.cols)
    }
    fn name(&self, i: usize) -> String {
        format!("{}[{i}]", self.path.display())
    }
    fn load(&mut self, i: usize) -> Result<DynamicImage> {
        let sz = self.rows * self.cols;
        let img = image::GrayImage::from_raw(
            self.cols as u32,
            self.rows as u32,
            self.pixels[i * sz..(i + 1) * sz].to_vec(),
        )
        .expect("sizes checked when opening");
        Ok(DynamicImage::ImageLuma8(img))
    }
    fn label(&self, i: usize) -> Option<i64> {
        self.labels.as_ref().map(|l| l[i] as i64)
    }
    fn has_labels(&self) -> bool {
        self.labels.is_some()
    }
    fn is_grey(&self) -> bool {
        true
    }
}
