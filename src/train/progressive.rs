//! The automatic progressive ensemble (reference §6.2) in one command: train the base GAN for
//! `baseline_kimg`, then for each stage probe the networks left in the bank on the previous
//! stage's best-FID snapshot (its latest without metrics), append the winner to the ensemble
//! (its reference loss, label-smoothed when the probe's accuracy exceeds 0.9), and train the
//! stage from that snapshot for its kimg.
//!
//! Layout under the root directory: `progressive.json` (the schedule), `selection.jsonl` (every
//! probe: stage, checkpoint, network, accuracies), and one ordinary run directory per stage,
//! `stage0-baseline`, `stage1-<network>`, ... Each stage's options (and so every snapshot) carry
//! a [`Stage`]: its index, the networks chosen so far, those left, and the snapshot it started
//! from; rerunning the command (or `vagan train --resume ROOT`) continues exactly where a killed
//! schedule stopped.
use super::snapshot::{self, Snapshot};
use super::{read_jsonl, CvOptions, TrainOptions, Trainer};
use crate::probe::{self, ProbeOptions};
use crate::weights::cache::Cache;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Device;

/// A run's place in the schedule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stage {
    pub index: usize,
    /// The networks in the ensemble, in the order they were chosen.
    pub chosen: Vec<String>,
    /// The bank networks not chosen yet.
    pub remaining: Vec<String>,
    /// The snapshot the stage started from (None for the baseline).
    pub start: Option<PathBuf>,
}

/// The schedule, as written to `progressive.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Schedule {
    pub bank: Vec<String>,
    /// kimg of each vision-aided stage (its length is the number of stages).
    pub stage_kimg: Vec<f64>,
    pub baseline_kimg: f64,
    /// Real images (and as many fakes) per probed network.
    pub probe_images: usize,
    /// The options of the baseline; each stage adds its ensemble.
    pub base: TrainOptions,
}

/// Probe accuracy above which the winner's loss is label-smoothed (`_s`), as the reference.
pub const SMOOTH_ABOVE: f64 = 0.9;

fn stage_dir(root: &Path, index: usize, network: Option<&str>) -> PathBuf {
    root.join(format!("stage{index}-{}", network.unwrap_or("baseline")))
}

/// The directory of stage `index` if the stage has started (its options are written; a
/// directory without them was left by a kill before the stage began, and is started again).
fn existing_stage_dir(root: &Path, index: usize) -> Result<Option<PathBuf>> {
    let prefix = format!("stage{index}-");
    Ok(std::fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.join("training_options.json").exists()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        }))
}

/// Trains one stage's run directory to its end: resumes it from its latest snapshot, or starts
/// it (from `opts.stage.start` when set) if it has none yet. Returns its last snapshot.
fn train_stage(opts: TrainOptions, dir: &Path, device: Device, progress: bool) -> Result<PathBuf> {
    let (opts, resume) = match snapshot::latest(dir) {
        Ok(latest) => {
            let mut o = Snapshot::load(&latest)?.meta.options;
            o.kimg = opts.kimg;
            (o, Some(latest))
        }
        Err(_) => {
            let start = opts.stage.as_ref().and_then(|s| s.start.clone());
            (opts, start)
        }
    };
    Trainer::new(opts, dir, device, resume.as_deref())?.run(progress)
}

/// Runs the schedule under `root` (created) or continues it.
pub fn run(schedule: &Schedule, root: &Path, device: Device, progress: bool) -> Result<PathBuf> {
    ensure!(
        !schedule.stage_kimg.is_empty(),
        "--stage-kimg: at least one stage"
    );
    ensure!(
        schedule.stage_kimg.len() <= schedule.bank.len(),
        "--stages {}: the bank has only {} networks",
        schedule.stage_kimg.len(),
        schedule.bank.len()
    );
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let file = root.join("progressive.json");
    if file.exists() {
        let saved: Schedule = serde_json::from_str(&std::fs::read_to_string(&file)?)
            .with_context(|| format!("{}: unreadable schedule", file.display()))?;
        ensure!(
            saved.bank == schedule.bank
                && saved.stage_kimg == schedule.stage_kimg
                && saved.baseline_kimg == schedule.baseline_kimg,
            "{} holds another schedule; resume it with `vagan train --resume {}`",
            root.display(),
            root.display()
        );
    } else {
        let json = serde_json::to_string_pretty(schedule)?;
        crate::util::write_atomic(&file, |f| Ok(f.write_all(json.as_bytes())?))?;
    }
    let mut stage = Stage {
        index: 0,
        chosen: Vec::new(),
        remaining: schedule.bank.clone(),
        start: None,
    };
    let baseline = TrainOptions {
        kimg: schedule.baseline_kimg,
        cv: None,
        stage: Some(stage.clone()),
        ..schedule.base.clone()
    };
    let mut dir = stage_dir(root, 0, None);
    let mut last = train_stage(baseline, &dir, device, progress)?;
    for (i, &kimg) in schedule.stage_kimg.iter().enumerate() {
        let index = i + 1;
        let (opts, next_dir) = match existing_stage_dir(root, index)? {
            Some(d) => {
                let json = std::fs::read_to_string(d.join("training_options.json"))
                    .with_context(|| format!("{}: no training_options.json", d.display()))?;
                (serde_json::from_str::<TrainOptions>(&json)?, d)
            }
            None => {
                let checkpoint = snapshot::best_or_latest(&dir)?;
                let (opts, network) =
                    next_stage(schedule, root, &stage, &checkpoint, kimg, device)?;
                (opts, stage_dir(root, index, Some(&network)))
            }
        };
        stage = opts
            .stage
            .clone()
            .context("a stage's options name their stage")?;
        last = train_stage(opts, &next_dir, device, progress)?;
        dir = next_dir;
    }
    Ok(last)
}

/// Probes the remaining bank on `checkpoint`, records every result in `selection.jsonl`, and
/// returns the next stage's options and its network.
fn next_stage(
    schedule: &Schedule,
    root: &Path,
    prev: &Stage,
    checkpoint: &Path,
    kimg: f64,
    device: Device,
) -> Result<(TrainOptions, String)> {
    let index = prev.index + 1;
    let snap = Snapshot::load(checkpoint)?;
    let dataset = crate::data::Dataset::open(&snap.meta.options.data)?;
    let (_vs, g_ema) = snap.generator_ema(device)?;
    let remaining: Vec<&str> = prev.remaining.iter().map(String::as_str).collect();
    let opts = ProbeOptions {
        num_images: schedule.probe_images,
        seed: snap.meta.options.seed,
        ..Default::default()
    };
    let log = root.join("selection.jsonl");
    // A probe interrupted before its stage started is redone: drop its partial lines.
    let kept: String = read_jsonl(&log)
        .into_iter()
        .filter(|v| v["stage"].as_u64().is_some_and(|s| (s as usize) < index))
        .map(|v| format!("{v}\n"))
        .collect();
    crate::util::write_atomic(&log, |f| Ok(f.write_all(kept.as_bytes())?))?;
    let cache = Cache::open_default()?;
    let ranked = probe::select(&remaining, &cache, &dataset, &g_ema, &opts, device, |r| {
        eprintln!(
            "stage {index} probe: {} {:.4} ± {:.4}",
            r.network, r.mean_accuracy, r.std_accuracy
        );
    })?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log)?;
    for (rank, r) in ranked.iter().enumerate() {
        let line = serde_json::json!({
            "stage": index,
            "checkpoint": checkpoint,
            "kimg": snap.meta.state.cur_nimg as f64 / 1000.0,
            "rank": rank + 1,
            "chosen": rank == 0,
            "result": r,
        });
        writeln!(file, "{line}")?;
    }
    let winner = &ranked[0];
    let base = snap.meta.options;
    let augment = base
        .cv
        .as_ref()
        .map_or_else(Default::default, |c| c.augment.clone());
    let mut loss = CvOptions::default_loss(&winner.network, &augment);
    if winner.mean_accuracy > SMOOTH_ABOVE && !loss.ends_with("_s") {
        loss.push_str("_s");
    }
    let mut chosen = prev.chosen.clone();
    chosen.push(winner.network.clone());
    let cv = match base.cv.clone() {
        Some(c) => CvOptions {
            bank: chosen.join("+"),
            loss: format!("{}+{loss}", c.loss),
            ..c
        },
        None => CvOptions {
            bank: chosen.join("+"),
            loss,
            head: Default::default(),
            augment,
            warmup_kimg: 0.0,
        },
    };
    let stage = Stage {
        index,
        remaining: prev
            .remaining
            .iter()
            .filter(|n| **n != winner.network)
            .cloned()
            .collect(),
        chosen,
        start: Some(checkpoint.to_path_buf()),
    };
    let opts = TrainOptions {
        kimg: snap.meta.state.cur_nimg as f64 / 1000.0 + kimg,
        cv: Some(cv),
        stage: Some(stage),
        ..base
    };
    Ok((opts, winner.network.clone()))
}
