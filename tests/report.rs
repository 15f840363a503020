//! The HTML run report: a tiny vision-aided run trained here (EfficientNet-Lite0 under ADA,
//! FID of 16 images: needs `vagan weights fetch efficientnet_lite0 inception_fid`), a
//! progressive root laid out by the test itself, the comparison page, and the pages rendered
//! by headless Chromium (Debian `chromium`). The pages and screenshots are kept under
//! `target/test-artifacts/report/`.
mod common;

use clap::Parser;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use vagan::report::cli::ReportArgs;
use vagan::report::{write_comparison, write_report};

/// The sections of a run's page, of a progressive root's page, and of a comparison page.
const RUN_SECTIONS: &[&str] = &[
    "summary",
    "losses",
    "augmentation",
    "metrics",
    "speed",
    "samples",
    "probe",
    "options",
];
const ROOT_SECTIONS: &[&str] = &[
    "summary", "stages", "metrics", "samples", "probe", "options",
];
const COMPARE_SECTIONS: &[&str] = &["summary", "metrics", "speed"];

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts/report");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn vagan(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_vagan"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vagan {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The tiny run, trained once per test process: 3 ticks of 16 images, a snapshot, a grid and
/// an FID at each.
fn tiny_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = artifacts().join("tiny");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let idx = dir.join("t10k-images-idx3-ubyte");
        common::write_idx(&idx, 40, 8, 3);
        let data = dir.join("d.vds");
        let s = |p: &Path| p.to_str().unwrap().to_string();
        vagan(&[
            "dataset",
            "--source",
            &s(&idx),
            "--dest",
            &s(&data),
            "--resolution",
            "8",
        ]);
        let run = dir.join("run");
        let (data, run_dir) = (s(&data), s(&run));
        let mut args = vec![
            "train",
            "--data",
            &data,
            "--run-dir",
            &run_dir,
            "--kimg",
            "0.048",
        ];
        args.extend(common::TINY_TRAIN);
        args.extend([
            "--cv",
            "efficientnet_lite0",
            "--cv-aug",
            "ada",
            "--cv-warmup-kimg",
            "0.016",
            "--metrics",
            "fid16",
        ]);
        vagan(&args);
        run
    })
}

/// A 16×16 grey PNG.
fn write_png(path: &Path, shade: u8) {
    image::GrayImage::from_pixel(16, 16, image::Luma([shade]))
        .save(path)
        .unwrap();
}

fn write_jsonl(path: &Path, lines: &[serde_json::Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn base_options(kimg: f64) -> serde_json::Value {
    json!({
        "data": "/nonexistent/d.vds", "kimg": kimg, "batch": 4, "tick_kimg": 0.008, "snap": 1,
        "seed": 0, "cbase": 64, "cmax": 16, "z_dim": 8, "w_dim": 8, "map_layers": 2,
        "glr": 0.0025, "dlr": 0.0025, "gamma": 0.0064, "pl_weight": 2.0, "style_mixing": 0.9,
        "ema_kimg": 10.0, "ema_rampup": 0.05, "mbstd_group": 4, "mirror": false,
        "diffaug": "color,translation,cutout", "grid": 2, "cv": null, "metrics": ["fid16"]
    })
}

/// One stage's run directory: two ticks, an FID per tick, grids, and its options.
fn write_stage(
    dir: &Path,
    options: serde_json::Value,
    kimg0: f64,
    fids: [f64; 2],
    cv: Option<&str>,
) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("training_options.json"),
        serde_json::to_string_pretty(&options).unwrap(),
    )
    .unwrap();
    write_png(&dir.join("reals.png"), 200);
    write_png(&dir.join("fakes_init.png"), 20);
    let mut ticks = Vec::new();
    let mut metric = Vec::new();
    for (i, fid) in fids.iter().enumerate() {
        let kimg = kimg0 + 0.008 * (i + 1) as f64;
        let nimg = (kimg * 1000.0).round() as u64;
        let mut tick = json!({
            "tick": i + 1, "kimg": kimg, "nimg": nimg, "img_per_s": 20.0 + i as f64,
            "sec_per_tick": 0.4, "total_time_s": 0.4 * (i + 1) as f64, "peak_rss_gb": 1.2,
            "loss_G": 1.0, "loss_D": 1.3, "r1_penalty": 0.01, "pl_penalty": 0.2,
            "score_real": 0.1, "score_fake": -0.1, "timestamp": 1.8e9
        });
        if let Some(network) = cv {
            tick["loss_G_cv"] = json!(1.7);
            tick["loss_D_cv"] = json!(0.8);
            tick["cv_active"] = json!(true);
            tick[format!("cv_ada_p.{network}")] = json!(0.01 * i as f64);
        }
        ticks.push(tick);
        let snapshot = format!(
            "network-snapshot-{:06}.{:03}.safetensors",
            nimg / 1000,
            nimg % 1000
        );
        metric.push(json!({
            "kimg": kimg, "metric": "fid16", "nimg": nimg, "results": {"fid16": fid},
            "snapshot": snapshot, "timestamp": 1.8e9, "total_time": 1.0
        }));
        write_png(
            &dir.join(format!("fakes{:06}.png", nimg / 1000 + i as u64)),
            100,
        );
    }
    write_jsonl(&dir.join("stats.jsonl"), &ticks);
    write_jsonl(&dir.join("metric-fid16.jsonl"), &metric);
}

/// A progressive root as `vagan train --progressive` lays it out, written directly: the
/// baseline, stage 1 (Lite1 chosen over Lite0 by the probe), stage 2 not started yet.
fn synthetic_root(root: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root).unwrap();
    let bank = ["efficientnet_lite0", "efficientnet_lite1"];
    let schedule = json!({
        "bank": bank, "stage_kimg": [0.016, 0.016], "baseline_kimg": 0.016, "probe_images": 16,
        "base": base_options(0.016)
    });
    std::fs::write(root.join("progressive.json"), schedule.to_string()).unwrap();
    let mut baseline = base_options(0.016);
    baseline["stage"] = json!({"index": 0, "chosen": [], "remaining": bank, "start": null});
    write_stage(
        &root.join("stage0-baseline"),
        baseline,
        0.0,
        [320.0, 300.0],
        None,
    );
    let start = root.join("stage0-baseline/network-snapshot-best.safetensors");
    let mut stage1 = base_options(0.032);
    stage1["cv"] = json!({
        "bank": "efficientnet_lite1", "loss": "sigmoid_s", "head": "style_gan2",
        "augment": {"kind": "diff_augment", "policy": "color,translation,cutout"},
        "warmup_kimg": 0.0
    });
    stage1["stage"] = json!({
        "index": 1, "chosen": ["efficientnet_lite1"], "remaining": ["efficientnet_lite0"],
        "start": start
    });
    write_stage(
        &root.join("stage1-efficientnet_lite1"),
        stage1,
        0.016,
        [290.0, 270.0],
        Some("efficientnet_lite1"),
    );
    let probe = |rank: u64, network: &str, acc: f64| {
        json!({
            "stage": 1, "checkpoint": start, "kimg": 0.016, "rank": rank, "chosen": rank == 1,
            "result": {"network": network, "mean_accuracy": acc, "std_accuracy": 0.01,
                       "accuracies": [acc - 0.01, acc, acc + 0.01], "num_real": 16,
                       "num_fake": 16, "seconds": 2.5}
        })
    };
    write_jsonl(
        &root.join("selection.jsonl"),
        &[
            probe(1, "efficientnet_lite1", 0.93),
            probe(2, "efficientnet_lite0", 0.81),
        ],
    );
    root.to_path_buf()
}

/// Checks that `text` nests its tags properly (elements named in `void` need no end tag) and
/// that attribute quotes and entities are closed; returns the number of elements.
fn check_well_formed(text: &str, void: &[&str]) -> usize {
    let mut open: Vec<String> = Vec::new();
    let mut elements = 0;
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let between = &rest[..start];
        check_entities(between);
        let tail = &rest[start..];
        if let Some(comment) = tail.strip_prefix("<!--") {
            let end = comment.find("-->").expect("unclosed comment");
            rest = &comment[end + 3..];
            continue;
        }
        let end = tag_end(tail).unwrap_or_else(|| panic!("unclosed tag at {:.60}", tail));
        let tag = &tail[1..end];
        rest = &tail[end + 1..];
        if tag.starts_with('!') || tag.starts_with('?') {
            continue;
        }
        // Raw-text elements end only at their end tag.
        if let Some(closing) = tag.strip_prefix('/') {
            let name = closing.trim().to_ascii_lowercase();
            let top = open
                .pop()
                .unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(top, name, "</{name}> closes <{top}>");
            continue;
        }
        elements += 1;
        let name: String = tag
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap()
            .to_ascii_lowercase();
        assert!(!name.is_empty(), "a tag without a name: <{tag}>");
        check_entities(tag);
        if tag.ends_with('/') || void.contains(&name.as_str()) {
            continue;
        }
        if name == "style" || name == "script" {
            let close = format!("</{name}>");
            let end = rest
                .find(&close)
                .unwrap_or_else(|| panic!("unclosed <{name}>"));
            rest = &rest[end + close.len()..];
            continue;
        }
        open.push(name);
    }
    check_entities(rest);
    assert!(open.is_empty(), "unclosed elements: {open:?}");
    elements
}

/// The index of the `>` that ends the tag at the start of `tail`, outside quoted values.
fn tag_end(tail: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in tail.char_indices().skip(1) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i),
            (None, '<') => panic!("'<' inside a tag: {:.60}", tail),
            _ => {}
        }
    }
    None
}

/// Every '&' starts a complete entity.
fn check_entities(text: &str) {
    for (i, _) in text.match_indices('&') {
        let entity = &text[i..];
        let end = entity
            .find(';')
            .unwrap_or_else(|| panic!("bare '&' in {:.40}", entity));
        assert!(
            end <= 10
                && entity[1..end]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '#'),
            "bad entity in {:.40}",
            entity
        );
    }
}

/// Every inline `<svg>…</svg>` of a page.
fn svgs(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        let end = rest[start..].find("</svg>").expect("unclosed <svg>") + start + 6;
        out.push(&rest[start..end]);
        rest = &rest[end..];
    }
    out
}

/// The trimmed texts of a chart's `<text>` elements: titles, tick labels, legend entries.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let body = &t[t.find('>').unwrap() + 1..];
            body[..body.find("</text>").unwrap()].trim().to_string()
        })
        .collect()
}

/// The number of data lines in a chart (plotters draws them 2 px wide; axes, grid lines and
/// legend swatches have other widths).
fn data_lines(svg: &str) -> usize {
    svg.split("<polyline")
        .skip(1)
        .filter(|p| p[..p.find("/>").unwrap()].contains("stroke-width=\"2\""))
        .count()
}

/// The text of a section, from its opening tag to the next section.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<section id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no section '{id}'"));
    let end = html[start..].find("</section>").unwrap() + start;
    &html[start..end]
}

/// The values of `attr="..."` in `html`.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let key = format!(" {attr}=\"");
    html.match_indices(&key)
        .map(|(i, _)| {
            let value = &html[i + key.len()..];
            &value[..value.find('"').unwrap()]
        })
        .collect()
}

/// Checks a page's structure: its sections, well-formed HTML and SVG, nothing from a network,
/// and every relative `src` and `href` an existing file. Returns the page.
fn check_page(page: &Path, sections: &[&str]) -> String {
    let html = std::fs::read_to_string(page).unwrap();
    check_well_formed(&html, &["meta", "img", "link", "br", "hr", "input"]);
    for id in sections {
        section(&html, id);
        assert!(
            html.contains(&format!("<a href=\"#{id}\">")),
            "no contents link to '{id}'"
        );
    }
    for svg in svgs(&html) {
        assert!(check_well_formed(svg, &[]) > 3, "an empty chart");
        assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    }
    assert!(!html.contains("<script"), "the page has a script");
    let dir = page.parent().unwrap();
    for target in attribute_values(&html, "src")
        .into_iter()
        .chain(attribute_values(&html, "href"))
    {
        if target.starts_with('#') {
            continue;
        }
        assert!(
            !target.contains("://"),
            "{}: a reference outside the disk: {target}",
            page.display()
        );
        assert!(
            dir.join(target).exists(),
            "{}: {target} does not exist",
            page.display()
        );
    }
    html
}

#[test]
fn run_page_has_every_section_and_what_the_run_wrote() {
    let run = tiny_run();
    let page = write_report(run).unwrap();
    assert_eq!(page, run.join("report.html"));
    let html = check_page(&page, RUN_SECTIONS);
    let summary = section(&html, "summary");
    assert!(
        summary.contains("finished: 0.048 of 0.048 kimg"),
        "{summary}"
    );
    assert!(summary.contains("efficientnet_lite0"));
    assert!(summary.contains("8×8, 1 channel(s)"), "{summary}");
    assert!(summary.contains("vision-aided loss on since"), "{summary}");
    // The best FID named in the summary is the lowest in metric-fid16.jsonl, with its snapshot.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metric-fid16.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let best = lines
        .iter()
        .min_by(|a, b| {
            let v = |l: &serde_json::Value| l["results"]["fid16"].as_f64().unwrap();
            v(a).total_cmp(&v(b))
        })
        .unwrap();
    assert!(summary.contains(best["snapshot"].as_str().unwrap()));
    // Charts: losses with the vision-aided part, one line per network's p, the FID curve.
    let losses = section(&html, "losses");
    assert_eq!(svgs(losses).len(), 3);
    for key in [
        "loss_G",
        "loss_D",
        "loss_G_cv",
        "loss_D_cv",
        "r1_penalty",
        "score_real",
    ] {
        let labels: Vec<String> = svgs(losses).into_iter().flat_map(svg_texts).collect();
        assert!(
            labels.iter().any(|l| l == key),
            "no {key} line in {labels:?}"
        );
    }
    let augmentation = section(&html, "augmentation");
    assert!(augmentation.contains("cv_ada_p.efficientnet_lite0"));
    assert_eq!(svgs(augmentation).len(), 1);
    let metrics = section(&html, "metrics");
    assert_eq!(svgs(metrics).len(), 1);
    assert!(metrics.contains("metric-fid16.jsonl"));
    assert_eq!(metrics.matches("class=\"badge\">best").count(), 1);
    assert_eq!(svgs(section(&html, "speed")).len(), 2);
    // The strip: the reals, the initial grid, one grid per snapshot, in time order.
    let samples = section(&html, "samples");
    let shown = attribute_values(samples, "src");
    assert_eq!(
        shown,
        [
            "reals.png",
            "fakes_init.png",
            "fakes000000.016.png",
            "fakes000000.032.png",
            "fakes000000.048.png"
        ],
        "{samples}"
    );
    // A finished run's page does not reload itself.
    assert!(!html.contains("http-equiv=\"refresh\""));
    let options = section(&html, "options");
    for key in ["cv.bank", "cv.augment.kind", "kimg", "metrics"] {
        assert!(
            options.contains(&format!("<code>{key}</code>")),
            "no option {key}"
        );
    }
}

#[test]
fn health_hints_follow_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("stopped");
    write_stage(&run, base_options(1.0), 0.0, [300.0, 400.0], None);
    // Training stopped by a NaN: the error line as training writes it, a null in stats.
    std::fs::write(
        run.join("log.txt"),
        "starting run x at 0.000 kimg of 1 on Cpu, dataset d.vds (40 images, 1×8×8)\n\
         error: loss_G is NaN at step 5; the snapshots written before are intact\n",
    )
    .unwrap();
    let mut ticks: Vec<serde_json::Value> = std::fs::read_to_string(run.join("stats.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    ticks[1]["loss_G"] = serde_json::Value::Null;
    write_jsonl(&run.join("stats.jsonl"), &ticks);
    let html = check_page(&write_report(&run).unwrap(), RUN_SECTIONS);
    let summary = section(&html, "summary");
    assert!(summary.contains("stopped by an error (log.txt): loss_G is NaN at step 5"));
    assert!(summary.contains("non-finite values in stats.jsonl: loss_G from kimg 0.016"));
    assert!(
        summary.contains("the latest is 33% above the best"),
        "{summary}"
    );
    // The dataset is gone: the log's description of it stands in.
    assert!(summary.contains("8×8, 1 channel(s)"), "{summary}");
    // Stopped runs are not reloaded; a run still training is.
    assert!(!html.contains("http-equiv=\"refresh\""));
    std::fs::write(
        run.join("log.txt"),
        "resuming run x at 0.008 kimg of 1 on Cpu, dataset d.vds (40 images, 1×8×8)\n",
    )
    .unwrap();
    let html = std::fs::read_to_string(write_report(&run).unwrap()).unwrap();
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"60\">"));
    assert!(section(&html, "summary").contains("at 0.016 of 1 kimg"));
    assert!(!html.contains("stopped by an error"));
    // A `vagan select` ranking beside the snapshots is the run's probe table.
    let ranking = json!({
        "snapshot": run.join("network-snapshot-000000.016.safetensors"), "num_images": 16,
        "results": [
            {"network": "vgg16", "mean_accuracy": 0.9, "std_accuracy": 0.0,
             "accuracies": [0.9, 0.9, 0.9], "seconds": 1.0},
            {"network": "swin_t", "mean_accuracy": 0.7, "std_accuracy": 0.0,
             "accuracies": [0.7, 0.7, 0.7], "seconds": 1.0}
        ]
    });
    std::fs::write(
        run.join("selection-network-snapshot-000000.016.json"),
        ranking.to_string(),
    )
    .unwrap();
    let html = std::fs::read_to_string(write_report(&run).unwrap()).unwrap();
    let probe = section(&html, "probe");
    assert!(probe.contains("selection-network-snapshot-000000.016.json"));
    assert!(probe.contains("<tr class=\"chosen\"><td>1</td><td>vgg16 <span class=\"badge\">first"));
    // A directory that is not a run says so.
    let e = write_report(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("neither a run directory"), "{e}");
}

#[test]
fn progressive_root_page_links_its_stages_and_marks_the_chosen_networks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = synthetic_root(&tmp.path().join("prog"));
    let page = write_report(&root).unwrap();
    assert_eq!(page, root.join("report.html"));
    let html = check_page(&page, ROOT_SECTIONS);
    // Every stage is linked, and its page was written with a link back.
    let stages = section(&html, "stages");
    for stage in ["stage0-baseline", "stage1-efficientnet_lite1"] {
        assert!(stages.contains(&format!("href=\"{stage}/report.html\"")));
        let stage_html = check_page(&root.join(stage).join("report.html"), RUN_SECTIONS);
        assert!(stage_html.contains("href=\"../report.html\""));
    }
    assert!(section(&html, "summary").contains("the vision-aided stages went lower"));
    // Stage 1's probe: Lite1 chosen and marked; stage 2 not probed yet.
    let probe = section(&html, "probe");
    assert_eq!(probe.matches("<tr class=\"chosen\">").count(), 1);
    let chosen = &probe[probe.find("<tr class=\"chosen\">").unwrap()..];
    assert!(chosen[..chosen.find("</tr>").unwrap()].contains("efficientnet_lite1"));
    assert!(probe.contains("Stage 2</h3><p class=\"note\">No probe recorded"));
    // One FID line per stage in the chart across stages; the schedule is not done.
    let metrics = section(&html, "metrics");
    assert_eq!(svgs(metrics).len(), 1);
    assert_eq!(data_lines(svgs(metrics)[0]), 2);
    assert!(html.contains("http-equiv=\"refresh\""));
    // A stage's page shows its own probe, and refreshes the root's page.
    std::fs::remove_file(&page).unwrap();
    let stage1 = root.join("stage1-efficientnet_lite1");
    let stage_html = check_page(&write_report(&stage1).unwrap(), RUN_SECTIONS);
    assert!(page.exists());
    let stage_probe = section(&stage_html, "probe");
    assert!(stage_probe.contains("<tr class=\"chosen\">"));
    assert!(section(&stage_html, "summary").contains("href=\"../stage0-baseline/report.html\""));
    let baseline = std::fs::read_to_string(root.join("stage0-baseline/report.html")).unwrap();
    assert!(section(&baseline, "probe").contains("Stage 0 trains the base GAN"));
}

#[test]
fn comparison_overlays_the_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = synthetic_root(&tmp.path().join("prog"));
    let plain = tmp.path().join("baseline");
    write_stage(&plain, base_options(0.016), 0.0, [330.0, 310.0], None);
    let out = tmp.path().join("pages/compare.html");
    let runs = [plain.clone(), root.clone(), tiny_run().to_path_buf()];
    write_report(&plain).unwrap();
    assert_eq!(write_comparison(&runs, &out).unwrap(), out);
    let html = check_page(&out, COMPARE_SECTIONS);
    let chart = svgs(section(&html, "metrics"))[0];
    assert_eq!(data_lines(chart), 3);
    let labels = svg_texts(chart);
    for label in ["baseline", "prog", "run"] {
        assert!(labels.iter().any(|l| l == label), "no line for {label}");
    }
    let summary = section(&html, "summary");
    // The progressive root's stages make one curve; its best is stage 1's.
    assert!(summary.contains("lowest fid16"), "{summary}");
    assert!(summary.contains("progressive, 2 stages"));
    assert!(summary.contains("href=\"../baseline/report.html\""));
    assert!(summary.contains("fid16 at 0.016 kimg, the longest length every run measured"));
    assert!(write_comparison(&runs[..1], &out).is_err());
}

#[test]
fn cli_arguments() {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ReportArgs,
    }
    let parse = |a: &[&str]| {
        Cli::try_parse_from(std::iter::once("report").chain(a.iter().copied())).map(|c| c.args)
    };
    let one = parse(&["runs/a"]).unwrap();
    assert!(!one.compare);
    let two = parse(&["--compare", "runs/a", "runs/b"]).unwrap();
    assert_eq!(two.out, Path::new("report-compare.html"));
    assert!(parse(&["runs/a", "--out", "x.html"]).is_err());
    assert!(parse(&[]).is_err());
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nothing");
    assert!(vagan::report::cli::run(parse(&[missing.to_str().unwrap()]).unwrap()).is_err());
    assert!(vagan::report::cli::run(parse(&["--compare", "a"]).unwrap()).is_err());
}

/// The Chromium binary, or a failure that says how to install it.
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        if let Some(p) = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        }) {
            return p;
        }
    }
    panic!(
        "headless Chromium is needed to render the report: install it with \
         `apt-get install -y chromium` (Debian), as scripts/install.sh does"
    );
}

/// Loads `page` in headless Chromium: asserts that the browser logged no console message (the
/// pages have no script, so any message is an error such as a blocked resource) and that the
/// rendered DOM has every section, and keeps a screenshot as `shot`.
fn render_in_chromium(page: &Path, sections: &[&str], shot: &Path) {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let browser = chromium();
    let profile = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1200,3000",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "chromium failed on {url}:\n{stderr}");
        let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
        assert!(console.is_empty(), "{url}: console messages {console:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let dom = run(&["--dump-dom"]);
    for id in sections {
        let rendered = section(&dom, id);
        assert!(rendered.contains("<h2>"), "section '{id}' has no heading");
    }
    let source = std::fs::read_to_string(page).unwrap();
    assert_eq!(dom.matches("<svg").count(), source.matches("<svg").count());
    assert_eq!(dom.matches("<img").count(), source.matches("<img").count());
    let _ = std::fs::remove_file(shot);
    run(&[&format!("--screenshot={}", shot.display())]);
    let image = image::open(shot).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), (1200, 3000));
    // Not a blank page: the charts and grids bring many colours.
    let colours: std::collections::HashSet<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    assert!(
        colours.len() > 50,
        "{}: {} colours",
        shot.display(),
        colours.len()
    );
}

#[test]
fn pages_render_in_headless_chromium() {
    let artifacts = artifacts();
    let run = tiny_run();
    let page = write_report(run).unwrap();
    render_in_chromium(&page, RUN_SECTIONS, &artifacts.join("run-report.png"));
    let root = synthetic_root(&artifacts.join("progressive"));
    let page = write_report(&root).unwrap();
    render_in_chromium(
        &page,
        ROOT_SECTIONS,
        &artifacts.join("progressive-report.png"),
    );
    let out = artifacts.join("compare.html");
    write_comparison(&[root, run.to_path_buf()], &out).unwrap();
    render_in_chromium(
        &out,
        COMPARE_SECTIONS,
        &artifacts.join("compare-report.png"),
    );
}
