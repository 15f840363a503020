//! What a report knows about a run directory or a progressive schedule root: only what their
//! files say, read leniently (a run being written has a half-written last line, a stopped run
//! may lack files).
use crate::train::read_jsonl;
use anyhow::{Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One ordinary run directory.
pub struct RunDir {
    pub dir: PathBuf,
    /// `training_options.json` as written (kept as JSON so that older and newer runs render).
    pub options: Value,
    /// `stats.jsonl`: one object per tick.
    pub ticks: Vec<Value>,
    /// Every `metric-<name>.jsonl`, the options' metrics first in their order.
    pub metrics: Vec<MetricFile>,
    /// `fakes_init.png` then `fakesNNNNNN[.NNN].png` in kimg order.
    pub grids: Vec<Grid>,
    /// The rankings `vagan select` wrote beside this run's snapshots: file name and contents.
    pub selections: Vec<(String, Value)>,
    pub log: LogFacts,
}

pub struct MetricFile {
    pub name: String,
    pub lines: Vec<Value>,
}

/// One evaluation of one result of a metric file.
pub struct Evaluation {
    pub kimg: f64,
    pub value: f64,
    pub snapshot: Option<String>,
}

pub struct Grid {
    pub file: String,
    /// The kimg the grid was drawn at (None: before training).
    pub kimg: Option<f64>,
}

/// The lines of `log.txt` a summary needs.
#[derive(Default)]
pub struct LogFacts {
    /// The dataset as the latest start described it, e.g. `data/x.vds (1000 images, 1×32×32)`.
    pub dataset: Option<String>,
    /// The device of the latest start.
    pub device: Option<String>,
    /// How many times training started or resumed in this directory.
    pub starts: usize,
    /// The error that ended the latest start, if it ended by one.
    pub error: Option<String>,
}

impl RunDir {
    pub fn is_run(dir: &Path) -> bool {
        dir.join("training_options.json").is_file()
    }

    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("training_options.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let options: Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        let mut names: Vec<String> = options["metrics"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut grids = Vec::new();
        let mut others = Vec::new();
        let mut selections = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let file = entry?.file_name().to_string_lossy().to_string();
            if let Some(name) = file
                .strip_prefix("metric-")
                .and_then(|r| r.strip_suffix(".jsonl"))
            {
                if !names.iter().any(|n| n == name) {
                    others.push(name.to_string());
                }
            } else if file.starts_with("selection-") && file.ends_with(".json") {
                let ranking = std::fs::read_to_string(dir.join(&file))
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok());
                if let Some(ranking) = ranking {
                    selections.push((file, ranking));
                }
            } else if file == "fakes_init.png" {
                grids.push(Grid { file, kimg: None });
            } else if let Some(kimg) = file
                .strip_prefix("fakes")
                .and_then(|r| r.strip_suffix(".png"))
                .and_then(|n| n.parse::<f64>().ok())
            {
                grids.push(Grid {
                    file,
                    kimg: Some(kimg),
                });
            }
        }
        grids.sort_by(|a, b| a.kimg.unwrap_or(-1.0).total_cmp(&b.kimg.unwrap_or(-1.0)));
        others.sort();
        names.extend(others);
        selections.sort_by(|a, b| a.0.cmp(&b.0));
        let metrics = names
            .into_iter()
            .map(|name| MetricFile {
                lines: read_jsonl(&dir.join(format!("metric-{name}.jsonl"))),
                name,
            })
            .filter(|m| !m.lines.is_empty())
            .collect();
        Ok(RunDir {
            dir: dir.to_path_buf(),
            options,
            ticks: read_jsonl(&dir.join("stats.jsonl")),
            metrics,
            grids,
            selections,
            log: LogFacts::read(&dir.join("log.txt")),
        })
    }

    /// The directory's name, for titles and legends.
    pub fn name(&self) -> String {
        display_name(&self.dir)
    }

    /// `(kimg, value)` of a tick statistic, ticks without it left out; a null (how a
    /// non-finite number is written in JSON) becomes NaN.
    pub fn tick_series(&self, key: &str) -> Vec<(f64, f64)> {
        self.ticks
            .iter()
            .filter_map(|t| {
                let v = t.get(key)?;
                Some((t["kimg"].as_f64()?, v.as_f64().unwrap_or(f64::NAN)))
            })
            .collect()
    }

    /// The numeric tick statistics whose names `keep` accepts, sorted.
    pub fn tick_keys(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut keys: Vec<String> = self
            .ticks
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|o| o.iter())
            .filter(|(k, v)| (v.is_number() || v.is_null()) && keep(k))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Thousands of images trained so far (the last tick's), and the target.
    pub fn kimg_done(&self) -> f64 {
        self.ticks
            .last()
            .and_then(|t| t["kimg"].as_f64())
            .unwrap_or(0.0)
    }

    pub fn kimg_total(&self) -> Option<f64> {
        self.options["kimg"].as_f64()
    }

    /// The run reached its target.
    pub fn finished(&self) -> bool {
        self.kimg_total()
            .is_some_and(|total| self.kimg_done() >= total - 1e-9)
    }

    /// The vision-aided networks with their loss types, in the ensemble's order.
    pub fn networks(&self) -> Vec<(String, String)> {
        let cv = &self.options["cv"];
        let split = |key: &str| -> Vec<String> {
            cv[key]
                .as_str()
                .map(|s| s.split('+').map(|p| p.trim().to_string()).collect())
                .unwrap_or_default()
        };
        let losses = split("loss");
        split("bank")
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n, losses.get(i).cloned().unwrap_or_default()))
            .collect()
    }

    /// The metric that picks the best snapshot: the options' first.
    pub fn primary_metric(&self) -> Option<&MetricFile> {
        self.metrics.first()
    }
}

impl MetricFile {
    /// The names of the numeric results, in their first appearance order.
    pub fn result_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for line in &self.lines {
            if let Some(results) = line["results"].as_object() {
                for k in results.keys() {
                    if !keys.contains(k) {
                        keys.push(k.clone());
                    }
                }
            }
        }
        keys
    }

    /// The main result: the one named like the file, else the first.
    pub fn main_key(&self) -> Option<String> {
        let keys = self.result_keys();
        keys.iter()
            .find(|k| **k == self.name)
            .or(keys.first())
            .cloned()
    }

    /// Every evaluation of result `key`, in file order (a null result is NaN).
    pub fn evaluations(&self, key: &str) -> Vec<Evaluation> {
        self.lines
            .iter()
            .filter_map(|l| {
                let v = l["results"].get(key)?;
                Some(Evaluation {
                    kimg: l["kimg"].as_f64()?,
                    value: v.as_f64().unwrap_or(f64::NAN),
                    snapshot: l["snapshot"].as_str().map(String::from),
                })
            })
            .collect()
    }

    /// The lowest finite value of the main result.
    pub fn best(&self) -> Option<Evaluation> {
        let key = self.main_key()?;
        self.evaluations(&key)
            .into_iter()
            .filter(|e| e.value.is_finite())
            .min_by(|a, b| a.value.total_cmp(&b.value))
    }
}

impl LogFacts {
    fn read(path: &Path) -> Self {
        let Ok(text) = std::fs::read_to_string(path) else {
            return LogFacts::default();
        };
        let mut facts = LogFacts::default();
        for line in text.lines() {
            // "starting run DIR at K kimg of T on DEVICE, dataset PATH (N images, C×R×R)"
            if line.starts_with("starting run ") || line.starts_with("resuming run ") {
                facts.starts += 1;
                facts.error = None;
                if let Some((head, dataset)) = line.split_once(", dataset ") {
                    facts.dataset = Some(dataset.to_string());
                    facts.device = head.rsplit_once(" on ").map(|(_, d)| d.to_string());
                }
            } else if let Some(error) = line.strip_prefix("error: ") {
                facts.error = Some(error.to_string());
            }
        }
        facts
    }
}

/// A progressive schedule root: `progressive.json`, `selection.jsonl` and its stage runs.
pub struct ProgressiveRoot {
    pub dir: PathBuf,
    pub schedule: Value,
    /// Every probe, in file order.
    pub probes: Vec<Value>,
    /// The stages that have started, by index.
    pub stages: Vec<(usize, RunDir)>,
}

impl ProgressiveRoot {
    pub fn is_root(dir: &Path) -> bool {
        dir.join("progressive.json").is_file()
    }

    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("progressive.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let schedule: Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        let mut stages = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let index = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("stage"))
                .and_then(|r| r.split_once('-'))
                .and_then(|(i, _)| i.parse::<usize>().ok());
            if let Some(index) = index.filter(|_| RunDir::is_run(&path)) {
                stages.push((index, RunDir::read(&path)?));
            }
        }
        stages.sort_by_key(|(i, _)| *i);
        Ok(ProgressiveRoot {
            dir: dir.to_path_buf(),
            schedule,
            probes: read_jsonl(&dir.join("selection.jsonl")),
            stages,
        })
    }

    /// The probes of stage `index`, best rank first.
    pub fn probes_of(&self, index: usize) -> Vec<&Value> {
        let mut probes: Vec<&Value> = self
            .probes
            .iter()
            .filter(|p| p["stage"].as_u64() == Some(index as u64))
            .collect();
        probes.sort_by_key(|p| p["rank"].as_u64().unwrap_or(u64::MAX));
        probes
    }

    /// The number of stages the schedule plans, the baseline included.
    pub fn planned_stages(&self) -> usize {
        self.schedule["stage_kimg"].as_array().map_or(0, Vec::len) + 1
    }
}

/// The progressive root a stage run belongs to: its parent, when the run's options name a
/// stage and the parent holds a schedule.
pub fn root_of_stage(run_dir: &Path, options: &Value) -> Option<PathBuf> {
    if options["stage"].is_null() {
        return None;
    }
    let parent = run_dir.parent()?;
    ProgressiveRoot::is_root(parent).then(|| parent.to_path_buf())
}

/// A directory's last component (the path itself when it has none, e.g. `.`).
pub fn display_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .as_deref()
        .and_then(Path::file_name)
        .or(dir.file_name())
        .map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().to_string(),
        )
}
