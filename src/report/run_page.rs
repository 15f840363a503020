//! The page of one run directory.
use super::html::{escape, escaped_list, facts, hints, note, table, table_marking, Level, Page};
use super::plot::{line_chart, Chart, Series};
use super::run::{display_name, Evaluation, MetricFile, ProgressiveRoot, RunDir};
use super::{fmt_duration, fmt_kimg, fmt_utc, fmt_value, median, now_unix_s, REPORT_FILE};
use anyhow::Result;
use serde_json::Value;
use std::fmt::Write;

/// Seconds between reloads of the page of a run still training.
const REFRESH_S: u32 = 60;

/// Most grids in the strip: beyond this, evenly spaced ones (always the first and the latest).
const MAX_GRIDS: usize = 24;

/// The latest FID this far above the best counts as a rise worth a look.
const RISE_WARNING: f64 = 0.10;

/// The page of `run`; `root` is its progressive schedule when it is a stage.
pub fn render(run: &RunDir, root: Option<&ProgressiveRoot>) -> Result<String> {
    let written = now_unix_s();
    let mut subtitle = format!(
        "{} · written {}",
        escape(&run.dir.display().to_string()),
        fmt_utc(written)
    );
    if let Some(root) = root {
        let _ = write!(
            subtitle,
            " · stage of the progressive schedule <a href=\"../{REPORT_FILE}\">{}</a>",
            escape(&display_name(&root.dir))
        );
    }
    let refresh = (!run.finished() && run.log.error.is_none()).then_some(REFRESH_S);
    let mut page = Page::new(&format!("Run {}", run.name()), subtitle, refresh);
    page.section("summary", "Summary", summary(run, root, written));
    page.section("losses", "Losses", losses(run)?);
    page.section("augmentation", "Augmentation", augmentation(run)?);
    page.section("metrics", "FID / KID", metrics(run)?);
    page.section("speed", "Speed", speed(run)?);
    page.section("samples", "Samples over time", samples(run));
    page.section("probe", "Probe", probe(run, root));
    page.section("options", "Resolved options", options_table(&run.options));
    Ok(page.finish())
}

fn summary(run: &RunDir, root: Option<&ProgressiveRoot>, written: f64) -> String {
    let mut out = hints(&health(run, written));
    let o = &run.options;
    let mut rows: Vec<(&str, String)> = Vec::new();
    let data = o["data"].as_str().unwrap_or("unknown");
    let header = crate::data::read_header(std::path::Path::new(data)).ok();
    rows.push((
        "Dataset",
        match (&header, &run.log.dataset) {
            (Some((h, _)), _) => format!("<code>{}</code> ({} images)", escape(data), h.count),
            (None, Some(described)) => format!("<code>{}</code>", escape(described)),
            (None, None) => format!("<code>{}</code>", escape(data)),
        },
    ));
    let resolution = header
        .as_ref()
        .map(|(h, _)| format!("{0}×{0}, {1} channel(s)", h.resolution, h.channels))
        .or_else(|| {
            // The log's description ends in "C×R×R)".
            let described = run.log.dataset.as_deref()?;
            let shape = described.rsplit(", ").next()?.trim_end_matches(')');
            let mut dims = shape.split('×');
            let channels = dims.next()?;
            let side = dims.next()?;
            Some(format!("{side}×{side}, {channels} channel(s)"))
        })
        .unwrap_or_else(|| "unknown".to_string());
    rows.push(("Resolution", escape(&resolution)));
    let done = run.kimg_done();
    rows.push((
        "Progress",
        match run.kimg_total() {
            Some(total) if total > 0.0 => format!(
                "{} of {} kimg ({:.0}%), {} ticks",
                fmt_kimg(done),
                total,
                (done / total * 100.0).min(100.0),
                run.ticks.len()
            ),
            _ => format!("{} kimg, {} ticks", fmt_kimg(done), run.ticks.len()),
        },
    ));
    let rate = median(run.tick_series("img_per_s").into_iter().map(|p| p.1));
    let time = run
        .ticks
        .last()
        .and_then(|t| t["total_time_s"].as_f64())
        .map(fmt_duration);
    let rss = run
        .tick_series("peak_rss_gb")
        .into_iter()
        .map(|p| p.1)
        .fold(f64::NAN, f64::max);
    rows.push((
        "Speed",
        format!(
            "{} img/s (median over ticks){}{}{}",
            rate.map_or("unknown".into(), |r| format!("{r:.1}")),
            time.map_or(String::new(), |t| format!(", {t} of training")),
            run.log
                .device
                .as_ref()
                .map_or(String::new(), |d| format!(", on {}", escape(d))),
            if rss.is_finite() {
                format!(", peak memory {rss:.2} GiB")
            } else {
                String::new()
            }
        ),
    ));
    rows.push(("Networks", networks(run)));
    if let Some(stage) = o["stage"].as_object() {
        rows.push(("Stage", stage_facts(stage, root)));
    }
    rows.push(("Best", best_summary(run)));
    out.push_str(&facts(&rows));
    out
}

fn networks(run: &RunDir) -> String {
    let nets = run.networks();
    if nets.is_empty() {
        return "none: the base GAN's discriminator alone".to_string();
    }
    let cv = &run.options["cv"];
    let list: Vec<String> = nets
        .iter()
        .map(|(n, loss)| format!("<b>{}</b> ({})", escape(n), escape(loss)))
        .collect();
    let mut text = list.join(", ");
    let _ = write!(
        text,
        "; heads {}, augmentation {}",
        escape(cv["head"].as_str().unwrap_or("?")),
        escape(cv["augment"]["kind"].as_str().unwrap_or("?"))
    );
    if let Some(w) = cv["warmup_kimg"].as_f64().filter(|w| *w > 0.0) {
        let _ = write!(text, ", warm-up {w} kimg");
    }
    text
}

fn stage_facts(stage: &serde_json::Map<String, Value>, root: Option<&ProgressiveRoot>) -> String {
    let names = |key: &str| match stage.get(key).map(escaped_list) {
        Some(list) if !list.is_empty() => list,
        _ => "none".to_string(),
    };
    let mut text = format!(
        "stage {} · chosen: {} · left in the bank: {}",
        stage.get("index").and_then(Value::as_u64).unwrap_or(0),
        names("chosen"),
        names("remaining")
    );
    if let Some(start) = stage.get("start").and_then(Value::as_str) {
        let start = std::path::Path::new(start);
        let from_dir = start
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().to_string());
        let file = start
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().to_string());
        let label = escape(&match &from_dir {
            Some(d) => format!("{d}/{file}"),
            None => file,
        });
        let linked = from_dir.filter(|d| root.is_some_and(|r| r.dir.join(d).is_dir()));
        match linked {
            Some(d) => {
                let _ = write!(
                    text,
                    " · started from <a href=\"../{}/{REPORT_FILE}\">{label}</a>",
                    escape(&d)
                );
            }
            None => {
                let _ = write!(text, " · started from <code>{label}</code>");
            }
        }
    }
    text
}

fn best_summary(run: &RunDir) -> String {
    let Some(metric) = run.primary_metric() else {
        return "no metric measured (train with <code>--metrics fid5k</code> to have one)"
            .to_string();
    };
    let key = metric.main_key().unwrap_or_default();
    let Some(best) = metric.best() else {
        return format!("{}: no finite value yet", escape(&key));
    };
    let mut text = format!(
        "{} <b>{}</b> at {} kimg",
        escape(&key),
        fmt_value(best.value),
        fmt_kimg(best.kimg)
    );
    if let Some(snapshot) = &best.snapshot {
        let _ = write!(text, ", {}", snapshot_link(run, snapshot));
    }
    if run.dir.join("network-snapshot-best.safetensors").exists() {
        text.push_str(" (copied to <code>network-snapshot-best.safetensors</code>)");
    }
    text
}

fn snapshot_link(run: &RunDir, snapshot: &str) -> String {
    if run.dir.join(snapshot).exists() {
        format!("<a href=\"{0}\"><code>{0}</code></a>", escape(snapshot))
    } else {
        format!("<code>{}</code>", escape(snapshot))
    }
}

/// What the files say about the run's health, most serious first.
fn health(run: &RunDir, written: f64) -> Vec<(Level, String)> {
    let mut out = Vec::new();
    if let Some(e) = &run.log.error {
        out.push((Level::Bad, format!("stopped by an error (log.txt): {e}")));
    }
    let non_finite: Vec<String> = run
        .tick_keys(|_| true)
        .into_iter()
        .filter_map(|k| {
            let first = run.tick_series(&k).into_iter().find(|p| !p.1.is_finite())?;
            Some(format!("{k} from kimg {}", fmt_kimg(first.0)))
        })
        .collect();
    if !non_finite.is_empty() {
        out.push((
            Level::Bad,
            format!(
                "non-finite values in stats.jsonl: {}",
                non_finite.join(", ")
            ),
        ));
    }
    let done = run.kimg_done();
    match run.kimg_total() {
        _ if run.ticks.is_empty() => {
            out.push((Level::Info, "no tick logged yet".to_string()));
        }
        Some(total) if run.finished() => {
            out.push((
                Level::Good,
                format!("finished: {} of {total} kimg", fmt_kimg(done)),
            ));
        }
        total => {
            let last = run.ticks.last().and_then(|t| t["timestamp"].as_f64());
            let mut text = format!(
                "at {} of {} kimg",
                fmt_kimg(done),
                total.map_or("?".to_string(), |t| t.to_string())
            );
            if let Some(t) = last {
                let _ = write!(
                    text,
                    "; last tick logged {} ({} before this report)",
                    fmt_utc(t),
                    fmt_duration(written - t)
                );
            }
            out.push((Level::Info, text));
        }
    }
    if let Some(metric) = run.primary_metric() {
        if let Some(level_text) = metric_trend(metric) {
            out.push(level_text);
        }
    } else {
        out.push((
            Level::Info,
            "no metric files: FID is not measured and no best snapshot is picked".to_string(),
        ));
    }
    if !run.networks().is_empty() {
        let first_on = run
            .ticks
            .iter()
            .find(|t| t["cv_active"] == Value::Bool(true))
            .and_then(|t| t["kimg"].as_f64());
        let now_off = run
            .ticks
            .last()
            .is_some_and(|t| t["cv_active"] == Value::Bool(false));
        if now_off {
            out.push((
                Level::Info,
                format!(
                    "vision-aided loss still in warm-up (off until {} kimg)",
                    run.options["cv"]["warmup_kimg"].as_f64().unwrap_or(0.0)
                ),
            ));
        } else if let Some(kimg) = first_on {
            out.push((
                Level::Good,
                format!(
                    "vision-aided loss on since the tick at {} kimg",
                    fmt_kimg(kimg)
                ),
            ));
        }
    }
    out
}

/// The first → best → latest values of a metric, and a warning when the latest is well above
/// the best.
fn metric_trend(metric: &MetricFile) -> Option<(Level, String)> {
    let key = metric.main_key()?;
    let evals = metric.evaluations(&key);
    let first = evals.first()?;
    let latest = evals.last()?;
    let Some(best) = metric.best() else {
        return Some((
            Level::Bad,
            format!("{key}: no finite value in {} evaluations", evals.len()),
        ));
    };
    if evals.len() == 1 {
        return Some((
            Level::Info,
            format!(
                "{key} {} at {} kimg (one evaluation so far)",
                fmt_value(best.value),
                fmt_kimg(best.kimg)
            ),
        ));
    }
    let path = format!(
        "{key} over {} evaluations: first {} → best {} (at {} kimg) → latest {} (at {} kimg)",
        evals.len(),
        fmt_value(first.value),
        fmt_value(best.value),
        fmt_kimg(best.kimg),
        fmt_value(latest.value),
        fmt_kimg(latest.kimg)
    );
    let rise = latest.value / best.value - 1.0;
    Some(if !latest.value.is_finite() {
        (Level::Bad, format!("{path}: the latest is not finite"))
    } else if latest.kimg == best.kimg && best.value < first.value {
        (Level::Good, format!("{path}: the latest is the best"))
    } else if rise > RISE_WARNING {
        (
            Level::Warning,
            format!("{path}: the latest is {:.0}% above the best", rise * 100.0),
        )
    } else {
        (Level::Info, path)
    })
}

/// A chart of the tick statistics `keys`, or a note when none was logged.
fn tick_chart(run: &RunDir, title: &str, y_label: &str, keys: &[String]) -> Result<String> {
    let series: Vec<Series> = keys
        .iter()
        .map(|k| Series {
            label: k.clone(),
            points: run.tick_series(k),
        })
        .collect();
    let chart = Chart {
        title,
        x_label: "kimg",
        y_label,
        series: &series,
        markers: run.ticks.len() < 3,
        highlight: None,
    };
    Ok(line_chart(&chart)?.unwrap_or_else(|| note(&format!("{title}: nothing logged yet."))))
}

fn losses(run: &RunDir) -> Result<String> {
    let mut out = tick_chart(
        run,
        "Losses",
        "loss",
        &run.tick_keys(|k| k.starts_with("loss_")),
    )?;
    out.push_str(&tick_chart(
        run,
        "Discriminator scores",
        "mean logit",
        &run.tick_keys(|k| k.starts_with("score_")),
    )?);
    out.push_str(&tick_chart(
        run,
        "Regularisers",
        "penalty",
        &run.tick_keys(|k| k.ends_with("_penalty")),
    )?);
    out.push_str(&note(
        "Means over each tick. loss_G_cv and loss_D_cv are the vision-aided networks' part.",
    ));
    Ok(out)
}

fn augmentation(run: &RunDir) -> Result<String> {
    let keys = run.tick_keys(|k| k.contains("ada_p"));
    let mut out = String::new();
    let d_policy = run.options["diffaug"].as_str().unwrap_or("none");
    let _ = write!(
        out,
        "<p>The base discriminator sees DiffAugment <code>{}</code>.",
        escape(d_policy)
    );
    if run.networks().is_empty() {
        out.push_str(
            " The run has no vision-aided networks, so no adaptive probability is logged.</p>",
        );
        return Ok(out);
    }
    let augment = &run.options["cv"]["augment"];
    let kind = augment["kind"].as_str().unwrap_or("?");
    let _ = write!(
        out,
        " The vision-aided networks see <code>{}</code>{}: ",
        escape(kind),
        augment["policy"]
            .as_str()
            .map_or(String::new(), |p| format!(" (<code>{}</code>)", escape(p)))
    );
    out.push_str(if kind == "ada" {
        "each network's probability p adapts to keep the sign of its real logits near the \
         target.</p>"
    } else {
        "p is logged per network but only ADA adapts it.</p>"
    });
    if keys.is_empty() {
        out.push_str(&note("No cv_ada_p.* values in stats.jsonl."));
    } else {
        out.push_str(&tick_chart(
            run,
            "Augmentation probability per network",
            "p",
            &keys,
        )?);
    }
    Ok(out)
}

/// One chart per metric file (every result it holds), and a table of its evaluations.
fn metrics(run: &RunDir) -> Result<String> {
    if run.metrics.is_empty() {
        return Ok(note(
            "No metric-*.jsonl: train with --metrics (e.g. fid5k) to measure FID at every snapshot.",
        ));
    }
    let mut out = String::new();
    for metric in &run.metrics {
        let main = metric.main_key();
        let best = metric.best();
        let series: Vec<Series> = metric
            .result_keys()
            .into_iter()
            .map(|k| Series {
                points: metric
                    .evaluations(&k)
                    .iter()
                    .map(|e| (e.kimg, e.value))
                    .collect(),
                label: k,
            })
            .collect();
        let title = format!("{} over kimg (lower is better)", metric.name);
        let chart = Chart {
            title: &title,
            x_label: "kimg",
            y_label: &metric.name,
            series: &series,
            markers: true,
            highlight: best.as_ref().map(|b| (b.kimg, b.value)),
        };
        let _ = write!(out, "<h3>metric-{}.jsonl</h3>", escape(&metric.name));
        out.push_str(&line_chart(&chart)?.unwrap_or_else(|| note("No finite value yet.")));
        if let Some(key) = main {
            out.push_str(&evaluation_table(
                run,
                &metric.evaluations(&key),
                best.as_ref(),
            ));
        }
    }
    out.push_str(&note(
        "The ring marks the best value, whose snapshot is kept as network-snapshot-best.",
    ));
    Ok(out)
}

fn evaluation_table(run: &RunDir, evals: &[Evaluation], best: Option<&Evaluation>) -> String {
    let rows: Vec<Vec<String>> = evals
        .iter()
        .map(|e| {
            let is_best = best.is_some_and(|b| b.kimg == e.kimg && b.value == e.value);
            vec![
                format!("<span class=\"num\">{}</span>", fmt_kimg(e.kimg)),
                format!(
                    "{}{}",
                    fmt_value(e.value),
                    if is_best {
                        " <span class=\"badge\">best</span>"
                    } else {
                        ""
                    }
                ),
                e.snapshot
                    .as_deref()
                    .map_or(String::new(), |s| snapshot_link(run, s)),
            ]
        })
        .collect();
    table(&["kimg", "value", "snapshot"], &rows)
}

fn speed(run: &RunDir) -> Result<String> {
    let mut out = tick_chart(run, "Training speed", "img/s", &["img_per_s".to_string()])?;
    out.push_str(&tick_chart(
        run,
        "Peak memory",
        "GiB",
        &run.tick_keys(|k| k == "peak_rss_gb"),
    )?);
    out.push_str(&note(
        "img/s is each tick's images over its wall time; peak memory is the process's resident high-water mark.",
    ));
    Ok(out)
}

fn samples(run: &RunDir) -> String {
    let mut figures: Vec<(String, String)> = Vec::new();
    if run.dir.join("reals.png").exists() {
        figures.push(("reals.png".into(), "training images".into()));
    }
    let shown = spread(run.grids.len(), MAX_GRIDS);
    for &i in &shown {
        let g = &run.grids[i];
        let caption = g
            .kimg
            .map_or("before training".to_string(), |k| format!("{k} kimg"));
        figures.push((g.file.clone(), caption));
    }
    if figures.is_empty() {
        return note("No sample grid written yet.");
    }
    let mut out = String::from("<div class=\"strip\">");
    for (file, caption) in &figures {
        let _ = write!(
            out,
            "<figure><a href=\"{0}\"><img src=\"{0}\" alt=\"{1}\" loading=\"lazy\"></a>\
             <figcaption>{1}</figcaption></figure>",
            escape(file),
            escape(caption)
        );
    }
    out.push_str("</div>");
    let mut explain = "G_ema samples from the same latents at every snapshot, oldest first; scroll sideways for later ones.".to_string();
    if shown.len() < run.grids.len() {
        let _ = write!(
            explain,
            " {} of {} grids shown, evenly spaced; all are in the directory.",
            shown.len(),
            run.grids.len()
        );
    }
    out.push_str(&note(&explain));
    out
}

/// At most `max` indices of `0..len`, evenly spaced, the first and the last included.
fn spread(len: usize, max: usize) -> Vec<usize> {
    if len <= max {
        return (0..len).collect();
    }
    let mut picked: Vec<usize> = (0..max)
        .map(|i| ((i as f64) * (len - 1) as f64 / (max - 1) as f64).round() as usize)
        .collect();
    picked.dedup();
    picked
}

fn probe(run: &RunDir, root: Option<&ProgressiveRoot>) -> String {
    let mut out = String::new();
    let index = run.options["stage"]["index"].as_u64().map(|i| i as usize);
    match (root, index) {
        (Some(root), Some(0)) => {
            out.push_str(&note(&format!(
                "Stage 0 trains the base GAN; the probe that chose stage 1's network ran on this \
                 stage's best snapshot ({} rows in {}'s selection.jsonl).",
                root.probes_of(1).len(),
                display_name(&root.dir)
            )));
        }
        (Some(root), Some(i)) => {
            out.push_str(&format!(
                "<p>The probe that chose this stage's network, on the previous stage's \
                 snapshot:</p>{}",
                stage_probe_table(&root.probes_of(i))
            ));
        }
        _ => {}
    }
    for (file, ranking) in &run.selections {
        let results: Vec<&Value> = ranking["results"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let _ = write!(
            out,
            "<h3>{}</h3><p class=\"note\">vagan select on <code>{}</code>, {} images per side; \
             first place marked.</p>",
            escape(file),
            escape(ranking["snapshot"].as_str().unwrap_or("?")),
            ranking["num_images"]
        );
        let rows: Vec<(bool, &Value)> = results
            .iter()
            .enumerate()
            .map(|(i, r)| (i == 0, *r))
            .collect();
        out.push_str(&probe_rows_table(&rows, "first"));
    }
    if out.is_empty() {
        out = note(
            "This run is not a progressive stage and no vagan select ranking sits beside its \
             snapshots: `vagan select --snapshot RUN_DIR` ranks the bank's networks on it.",
        );
    }
    out
}

/// The probes of one stage of selection.jsonl, best rank first, the chosen one marked.
pub fn stage_probe_table(probes: &[&Value]) -> String {
    if probes.is_empty() {
        return note("No probe recorded for this stage yet.");
    }
    let rows: Vec<(bool, &Value)> = probes
        .iter()
        .map(|p| (p["chosen"] == Value::Bool(true), &p["result"]))
        .collect();
    let first = probes[0];
    let checkpoint = first["checkpoint"].as_str().unwrap_or("?");
    format!(
        "{}{}",
        probe_rows_table(&rows, "chosen"),
        note(&format!(
            "Probed on {checkpoint} (at {} kimg).",
            first["kimg"].as_f64().map_or("?".into(), fmt_kimg)
        ))
    )
}

/// Probe results (as `ProbeResult` JSON) in rank order; the flagged row is highlighted and
/// badged `mark` (the network a stage chose, or the first of a ranking).
fn probe_rows_table(rows: &[(bool, &Value)], mark: &str) -> String {
    let body: Vec<(bool, Vec<String>)> = rows
        .iter()
        .enumerate()
        .map(|(rank, (chosen, r))| {
            let accuracies: Vec<String> = r["accuracies"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_f64)
                        .map(|x| format!("{x:.4}"))
                        .collect()
                })
                .unwrap_or_default();
            let network = escape(r["network"].as_str().unwrap_or("?"));
            let cells = vec![
                (rank + 1).to_string(),
                if *chosen {
                    format!("{network} <span class=\"badge\">{mark}</span>")
                } else {
                    network
                },
                format!(
                    "{} ± {}",
                    r["mean_accuracy"]
                        .as_f64()
                        .map_or("?".into(), |x| format!("{x:.4}")),
                    r["std_accuracy"]
                        .as_f64()
                        .map_or("?".into(), |x| format!("{x:.4}"))
                ),
                accuracies.join(", "),
                r["seconds"]
                    .as_f64()
                    .map_or("?".into(), |s| format!("{s:.1}")),
            ];
            (*chosen, cells)
        })
        .collect();
    table_marking(
        &[
            "rank",
            "network",
            "validation accuracy",
            "per split",
            "seconds",
        ],
        &body,
    )
}

/// Options as a flat table of dotted keys and JSON values.
pub fn options_table(options: &Value) -> String {
    let mut rows = Vec::new();
    flatten("", options, &mut rows);
    let body: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(k, v)| vec![format!("<code>{}</code>", escape(&k)), escape(&v)])
        .collect();
    table(&["option", "value"], &body)
}

fn flatten(prefix: &str, value: &Value, rows: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, rows);
            }
        }
        Value::String(s) => rows.push((prefix.to_string(), s.clone())),
        other => rows.push((prefix.to_string(), other.to_string())),
    }
}
