//! The comparison page: several runs' metric curves overlaid (the question every user asks:
//! did the vision-aided networks help?), their speed, and a table of best and latest values.
use super::html::{escape, hints, note, table, Level, Page};
use super::plot::{line_chart, Chart, Series};
use super::run::{display_name, ProgressiveRoot, RunDir};
use super::{fmt_kimg, fmt_utc, fmt_value, href, median, now_unix_s, REPORT_FILE};
use anyhow::{bail, Result};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// One compared run: a run directory, or a progressive root with its stages joined.
struct Compared {
    dir: PathBuf,
    label: String,
    runs: Vec<RunDir>,
}

impl Compared {
    fn read(dir: &Path) -> Result<Self> {
        let runs = if ProgressiveRoot::is_root(dir) {
            ProgressiveRoot::read(dir)?
                .stages
                .into_iter()
                .map(|(_, r)| r)
                .collect()
        } else if RunDir::is_run(dir) {
            vec![RunDir::read(dir)?]
        } else {
            bail!(
                "{} is neither a run directory (no training_options.json) nor a progressive \
                 schedule root (no progressive.json)",
                dir.display()
            );
        };
        Ok(Compared {
            dir: dir.to_path_buf(),
            label: display_name(dir),
            runs,
        })
    }

    /// `(kimg, value)` of a metric's main result over every stage.
    fn metric(&self, name: &str) -> Vec<(f64, f64)> {
        let mut points: Vec<(f64, f64)> = self
            .runs
            .iter()
            .filter_map(|r| r.metrics.iter().find(|m| m.name == name))
            .flat_map(|m| {
                let key = m.main_key().unwrap_or_default();
                m.evaluations(&key).into_iter().map(|e| (e.kimg, e.value))
            })
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        points
    }

    fn tick_series(&self, key: &str) -> Vec<(f64, f64)> {
        self.runs.iter().flat_map(|r| r.tick_series(key)).collect()
    }

    fn last(&self) -> Option<&RunDir> {
        self.runs.last()
    }

    fn networks(&self) -> String {
        let nets: Vec<String> = self
            .last()
            .map(|r| r.networks().into_iter().map(|(n, _)| n).collect())
            .unwrap_or_default();
        let kind = if self.runs.len() > 1 {
            format!(" (progressive, {} stages)", self.runs.len())
        } else {
            String::new()
        };
        if nets.is_empty() {
            format!("base GAN{kind}")
        } else {
            format!("{}{kind}", nets.join(" + "))
        }
    }
}

/// The lowest finite point.
fn best(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    points
        .iter()
        .copied()
        .filter(|p| p.1.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

pub fn render(dirs: &[PathBuf], out: &Path) -> Result<String> {
    if dirs.len() < 2 {
        bail!("--compare needs at least two run directories");
    }
    let mut compared = dirs
        .iter()
        .map(|d| Compared::read(d))
        .collect::<Result<Vec<_>>>()?;
    // Two runs of the same name (e.g. `a/lite0` and `b/lite0`) are told apart by their parent.
    let labels: Vec<String> = compared.iter().map(|c| c.label.clone()).collect();
    for c in &mut compared {
        if labels.iter().filter(|l| **l == c.label).count() > 1 {
            if let Some(parent) = c.dir.canonicalize().ok().and_then(|p| {
                p.parent()
                    .and_then(Path::file_name)
                    .map(|n| n.to_string_lossy().to_string())
            }) {
                c.label = format!("{parent}/{}", c.label);
            }
        }
    }
    let mut metric_names: Vec<String> = Vec::new();
    for c in &compared {
        for r in &c.runs {
            for m in &r.metrics {
                if !metric_names.contains(&m.name) {
                    metric_names.push(m.name.clone());
                }
            }
        }
    }
    let out_dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let title = format!(
        "Comparison: {}",
        compared
            .iter()
            .map(|c| c.label.as_str())
            .collect::<Vec<_>>()
            .join(" vs ")
    );
    let mut page = Page::new(
        &title,
        format!(
            "{} runs · written {}",
            compared.len(),
            fmt_utc(now_unix_s())
        ),
        None,
    );
    page.section(
        "summary",
        "Summary",
        summary(&compared, &metric_names, out_dir),
    );
    page.section(
        "metrics",
        "FID / KID overlaid",
        metrics(&compared, &metric_names)?,
    );
    page.section("speed", "Speed", speed(&compared)?);
    Ok(page.finish())
}

fn summary(compared: &[Compared], metric_names: &[String], out_dir: &Path) -> String {
    let primary = metric_names.first();
    let mut notes = Vec::new();
    if let Some(name) = primary {
        let bests: Vec<(&str, (f64, f64))> = compared
            .iter()
            .filter_map(|c| Some((c.label.as_str(), best(&c.metric(name))?)))
            .collect();
        if let Some((label, (kimg, value))) = bests.iter().min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
        {
            let others: Vec<String> = bests
                .iter()
                .filter(|b| b.0 != *label)
                .map(|(l, (_, v))| format!("{l} {}", fmt_value(*v)))
                .collect();
            notes.push((
                Level::Info,
                format!(
                    "lowest {name}: {label} with {} at {} kimg; the others' best: {}",
                    fmt_value(*value),
                    fmt_kimg(*kimg),
                    others.join(", ")
                ),
            ));
        }
        if let Some(text) = at_equal_kimg(compared, name) {
            notes.push((Level::Info, text));
        }
        let reached: Vec<f64> = compared
            .iter()
            .filter_map(|c| c.last().map(RunDir::kimg_done))
            .collect();
        let (lo, hi) = reached.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), k| {
            (lo.min(*k), hi.max(*k))
        });
        if hi - lo > 1e-9 {
            notes.push((
                Level::Warning,
                format!(
                    "the runs reached different lengths ({} to {} kimg): compare the curves at \
                     equal kimg, not only their bests",
                    fmt_kimg(lo),
                    fmt_kimg(hi)
                ),
            ));
        }
    } else {
        notes.push((
            Level::Warning,
            "no run has a metric file: train with --metrics to compare FID".to_string(),
        ));
    }
    let first_best = primary.and_then(|n| best(&compared[0].metric(n)));
    let rows: Vec<Vec<String>> = compared
        .iter()
        .map(|c| {
            let report = c.dir.join(REPORT_FILE);
            let name = if report.exists() {
                format!(
                    "<a href=\"{}\">{}</a>",
                    escape(&href(out_dir, &report)),
                    escape(&c.label)
                )
            } else {
                escape(&c.label)
            };
            let points = primary.map(|n| c.metric(n)).unwrap_or_default();
            let best_cell = best(&points).map_or("—".to_string(), |(k, v)| {
                let mut cell = format!("{} at {} kimg", fmt_value(v), fmt_kimg(k));
                if let Some((_, reference)) = first_best.filter(|_| !std::ptr::eq(c, &compared[0]))
                {
                    let _ = write!(
                        cell,
                        " ({:+.1}% vs {})",
                        (v / reference - 1.0) * 100.0,
                        escape(&compared[0].label)
                    );
                }
                cell
            });
            let latest = points.last().map_or("—".to_string(), |(k, v)| {
                format!("{} at {} kimg", fmt_value(*v), fmt_kimg(*k))
            });
            let rate = median(c.tick_series("img_per_s").into_iter().map(|p| p.1))
                .map_or("—".to_string(), |r| format!("{r:.1}"));
            vec![
                name,
                escape(&c.networks()),
                c.last().map_or("—".to_string(), |r| {
                    format!(
                        "{} / {}",
                        fmt_kimg(r.kimg_done()),
                        r.kimg_total().map_or("?".into(), |t| t.to_string())
                    )
                }),
                best_cell,
                latest,
                rate,
            ]
        })
        .collect();
    let best_header = primary.map_or("best".to_string(), |n| format!("best {n}"));
    let latest_header = primary.map_or("latest".to_string(), |n| format!("latest {n}"));
    let mut html = hints(&notes);
    html.push_str(&table(
        &[
            "run",
            "networks",
            "kimg done / total",
            &best_header,
            &latest_header,
            "median img/s",
        ],
        &rows,
    ));
    html
}

/// The metric of every run at the longest training length all of them measured: a fair
/// comparison when the runs have not reached the same kimg.
fn at_equal_kimg(compared: &[Compared], name: &str) -> Option<String> {
    let curves: Vec<(&str, Vec<(f64, f64)>)> = compared
        .iter()
        .map(|c| (c.label.as_str(), c.metric(name)))
        .filter(|(_, points)| !points.is_empty())
        .collect();
    if curves.len() < 2 {
        return None;
    }
    let value_at = |points: &[(f64, f64)], kimg: f64| {
        points
            .iter()
            .find(|p| (p.0 - kimg).abs() < 1e-6)
            .map(|p| p.1)
    };
    let kimg = curves[0].1.iter().rev().map(|p| p.0).find(|&k| {
        curves
            .iter()
            .all(|(_, points)| value_at(points, k).is_some())
    })?;
    let values: Vec<String> = curves
        .iter()
        .filter_map(|(label, points)| {
            value_at(points, kimg).map(|v| format!("{label} {}", fmt_value(v)))
        })
        .collect();
    Some(format!(
        "{name} at {} kimg, the longest length every run measured: {}",
        fmt_kimg(kimg),
        values.join(", ")
    ))
}

fn metrics(compared: &[Compared], metric_names: &[String]) -> Result<String> {
    if metric_names.is_empty() {
        return Ok(note("No metric-*.jsonl in any run."));
    }
    let mut out = String::new();
    for name in metric_names {
        let series: Vec<Series> = compared
            .iter()
            .map(|c| Series {
                label: c.label.clone(),
                points: c.metric(name),
            })
            .collect();
        let title = format!("{name} over kimg (lower is better)");
        let chart = Chart {
            title: &title,
            x_label: "kimg",
            y_label: name,
            series: &series,
            markers: true,
            highlight: None,
        };
        out.push_str(
            &line_chart(&chart)?.unwrap_or_else(|| note(&format!("{name}: no finite value yet."))),
        );
        let missing: Vec<&str> = compared
            .iter()
            .filter(|c| c.metric(name).is_empty())
            .map(|c| c.label.as_str())
            .collect();
        if !missing.is_empty() {
            out.push_str(&note(&format!("No {name} in: {}.", missing.join(", "))));
        }
    }
    Ok(out)
}

fn speed(compared: &[Compared]) -> Result<String> {
    let series: Vec<Series> = compared
        .iter()
        .map(|c| Series {
            label: c.label.clone(),
            points: c.tick_series("img_per_s"),
        })
        .collect();
    let chart = Chart {
        title: "Training speed",
        x_label: "kimg",
        y_label: "img/s",
        series: &series,
        markers: false,
        highlight: None,
    };
    Ok(line_chart(&chart)?.unwrap_or_else(|| note("No tick logged yet.")))
}
