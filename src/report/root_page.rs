//! The page of a progressive schedule root: the schedule, each stage linked, the metrics across
//! stages, each stage's latest samples, and every probe with the chosen network marked.
use super::html::{escape, escaped_list, facts, hints, note, table, Level, Page};
use super::plot::{line_chart, Chart, Series};
use super::run::{display_name, ProgressiveRoot, RunDir};
use super::run_page::{options_table, stage_probe_table};
use super::{fmt_kimg, fmt_utc, fmt_value, now_unix_s, REPORT_FILE};
use anyhow::Result;
use serde_json::Value;
use std::fmt::Write;

const REFRESH_S: u32 = 60;

pub fn render(root: &ProgressiveRoot) -> Result<String> {
    let subtitle = format!(
        "{} · written {}",
        escape(&root.dir.display().to_string()),
        fmt_utc(now_unix_s())
    );
    let stopped = root.stages.iter().any(|(_, s)| s.log.error.is_some());
    let complete =
        root.stages.len() >= root.planned_stages() && root.stages.iter().all(|(_, s)| s.finished());
    let refresh = (!complete && !stopped).then_some(REFRESH_S);
    let mut page = Page::new(
        &format!("Progressive schedule {}", display_name(&root.dir)),
        subtitle,
        refresh,
    );
    page.section("summary", "Summary", summary(root, complete));
    page.section("stages", "Stages", stages(root));
    page.section("metrics", "FID / KID across stages", metrics(root)?);
    page.section("samples", "Latest samples per stage", samples(root));
    page.section("probe", "Probes per stage", probes(root));
    page.section(
        "options",
        "Schedule and base options",
        options_table(&root.schedule),
    );
    Ok(page.finish())
}

fn summary(root: &ProgressiveRoot, complete: bool) -> String {
    let mut notes = Vec::new();
    for (i, stage) in &root.stages {
        if let Some(e) = &stage.log.error {
            notes.push((Level::Bad, format!("stage {i} stopped by an error: {e}")));
        }
    }
    let planned = root.planned_stages();
    if complete {
        notes.push((Level::Good, format!("all {planned} stages finished")));
    } else {
        notes.push((
            Level::Info,
            format!(
                "{} of {planned} stages started, {} finished",
                root.stages.len(),
                root.stages.iter().filter(|(_, s)| s.finished()).count()
            ),
        ));
    }
    let bests: Vec<(usize, String, f64, f64)> = root
        .stages
        .iter()
        .filter_map(|(i, s)| {
            let m = s.primary_metric()?;
            let b = m.best()?;
            Some((*i, m.main_key()?, b.value, b.kimg))
        })
        .collect();
    if let Some(baseline) = bests.iter().find(|b| b.0 == 0) {
        if let Some(best) = bests.iter().min_by(|a, b| a.2.total_cmp(&b.2)) {
            let text = format!(
                "best {} {} in stage {} at {} kimg; the baseline's best was {}",
                best.1,
                fmt_value(best.2),
                best.0,
                fmt_kimg(best.3),
                fmt_value(baseline.2)
            );
            notes.push(if best.0 > 0 && best.2 < baseline.2 {
                (
                    Level::Good,
                    format!(
                        "{text}: the vision-aided stages went lower (they also trained longer: \
                         `vagan report --compare` with a baseline run of the same length tells \
                         the two apart)"
                    ),
                )
            } else {
                (Level::Info, text)
            });
        }
    }
    let s = &root.schedule;
    let stage_kimg: Vec<String> = s["stage_kimg"]
        .as_array()
        .map(|a| a.iter().map(Value::to_string).collect())
        .unwrap_or_default();
    let mut out = hints(&notes);
    out.push_str(&facts(&[
        (
            "Dataset",
            format!(
                "<code>{}</code>",
                escape(s["base"]["data"].as_str().unwrap_or("?"))
            ),
        ),
        ("Bank", escaped_list(&s["bank"])),
        (
            "Schedule",
            format!(
                "baseline {} kimg, then {} vision-aided stage(s) of {} kimg",
                s["baseline_kimg"],
                stage_kimg.len(),
                stage_kimg.join(", ")
            ),
        ),
        (
            "Probe",
            format!(
                "{} real images and as many fakes per network",
                s["probe_images"]
            ),
        ),
    ]));
    out
}

fn stages(root: &ProgressiveRoot) -> String {
    if root.stages.is_empty() {
        return note("No stage has started yet.");
    }
    let rows: Vec<Vec<String>> = root
        .stages
        .iter()
        .map(|(i, run)| {
            let name = display_name(&run.dir);
            let added = root
                .probes_of(*i)
                .iter()
                .find(|p| p["chosen"] == Value::Bool(true))
                .and_then(|p| p["result"]["network"].as_str())
                .map_or_else(|| "—".to_string(), escape);
            let ensemble: Vec<String> = run
                .networks()
                .into_iter()
                .map(|(n, l)| format!("{n} ({l})"))
                .collect();
            let best = run
                .primary_metric()
                .and_then(|m| m.best())
                .map_or("—".to_string(), |b| {
                    format!("{} at {} kimg", fmt_value(b.value), fmt_kimg(b.kimg))
                });
            vec![
                i.to_string(),
                format!("<a href=\"{0}/{REPORT_FILE}\">{0}</a>", escape(&name)),
                added,
                if ensemble.is_empty() {
                    "base GAN".to_string()
                } else {
                    escape(&ensemble.join(" + "))
                },
                format!(
                    "{} / {}",
                    fmt_kimg(run.kimg_done()),
                    run.kimg_total().map_or("?".into(), |t| t.to_string())
                ),
                best,
                status(run),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "stage",
            "run directory",
            "network added",
            "ensemble (loss)",
            "kimg done / total",
            "best",
            "status",
        ],
        &rows,
    );
    out.push_str(&note(
        "Each stage continues from the previous stage's best snapshot, so kimg counts on across stages.",
    ));
    out
}

fn status(run: &RunDir) -> String {
    if run.log.error.is_some() {
        "stopped by an error".to_string()
    } else if run.finished() {
        "finished".to_string()
    } else {
        "training or interrupted".to_string()
    }
}

fn metrics(root: &ProgressiveRoot) -> Result<String> {
    let mut names: Vec<String> = Vec::new();
    for (_, run) in &root.stages {
        for m in &run.metrics {
            if !names.contains(&m.name) {
                names.push(m.name.clone());
            }
        }
    }
    if names.is_empty() {
        return Ok(note(
            "No metric-*.jsonl in any stage: the schedule runs without --metrics.",
        ));
    }
    let mut out = String::new();
    for name in &names {
        let mut series = Vec::new();
        let mut best: Option<(f64, f64)> = None;
        for (_, run) in &root.stages {
            let Some(metric) = run.metrics.iter().find(|m| &m.name == name) else {
                continue;
            };
            let Some(key) = metric.main_key() else {
                continue;
            };
            if let Some(b) = metric.best() {
                if best.is_none_or(|(_, v)| b.value < v) {
                    best = Some((b.kimg, b.value));
                }
            }
            series.push(Series {
                label: display_name(&run.dir),
                points: metric
                    .evaluations(&key)
                    .iter()
                    .map(|e| (e.kimg, e.value))
                    .collect(),
            });
        }
        let title = format!("{name} over kimg, one line per stage (lower is better)");
        let chart = Chart {
            title: &title,
            x_label: "kimg",
            y_label: name,
            series: &series,
            markers: true,
            highlight: best,
        };
        out.push_str(&line_chart(&chart)?.unwrap_or_else(|| note("No finite value yet.")));
    }
    out.push_str(&note("The ring marks the best value over all stages."));
    Ok(out)
}

fn samples(root: &ProgressiveRoot) -> String {
    let mut out = String::from("<div class=\"strip\">");
    let mut any = false;
    for (i, run) in &root.stages {
        let Some(grid) = run.grids.last() else {
            continue;
        };
        any = true;
        let name = display_name(&run.dir);
        let caption = format!(
            "stage {i}, {}",
            grid.kimg
                .map_or("before training".into(), |k| format!("{k} kimg"))
        );
        let _ = write!(
            out,
            "<figure><a href=\"{0}/{REPORT_FILE}\"><img src=\"{0}/{1}\" alt=\"{2}\" \
             loading=\"lazy\"></a><figcaption>{2}</figcaption></figure>",
            escape(&name),
            escape(&grid.file),
            escape(&caption)
        );
    }
    out.push_str("</div>");
    if !any {
        return note("No sample grid written yet.");
    }
    out.push_str(&note(
        "Each stage's latest grid; a stage's own page has them all.",
    ));
    out
}

fn probes(root: &ProgressiveRoot) -> String {
    let mut out = String::new();
    for index in 1..root.planned_stages() {
        let _ = write!(out, "<h3>Stage {index}</h3>");
        out.push_str(&stage_probe_table(&root.probes_of(index)));
    }
    if out.is_empty() {
        out = note("The schedule has no vision-aided stage.");
    }
    out
}
