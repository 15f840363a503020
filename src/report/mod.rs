//! The run report: one self-contained HTML page per run directory (`report.html`), read from
//! the files training writes, so that a user sees at a glance whether a run is healthy and
//! whether its vision-aided networks helped.
//!
//! A run's page has a summary with health hints, loss curves, the vision-aided networks'
//! augmentation probabilities, every metric over kimg, img/s, the sample grids as a strip, the
//! probe rankings, and the resolved options. A progressive schedule root gets a page of its own
//! (the schedule, each stage linked, FID across stages, every probe with the chosen network
//! marked), and each stage's page links back to it. [`write_comparison`] overlays the FID
//! curves of several runs, e.g. a baseline and a vision-aided run.
//!
//! The pages have no script and load nothing from the network: plots are inline SVG drawn by
//! plotters, images are referenced by paths relative to the page. A page of a run that has not
//! reached its kimg reloads itself every minute, so it can stay open while training writes it.
pub mod cli;
mod compare;
mod html;
mod plot;
mod root_page;
mod run;
mod run_page;

use anyhow::{bail, Result};
use run::{root_of_stage, ProgressiveRoot, RunDir};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// The report's file name inside a run directory or schedule root.
pub const REPORT_FILE: &str = "report.html";

/// Writes `report.html` into `run_dir` (atomically) and returns its path.
///
/// `run_dir` is a run directory or a progressive schedule root. For a root, every stage's page
/// is written too; for a stage run, its root's page is refreshed too, so both stay current
/// while a schedule trains.
pub fn write_report(run_dir: &Path) -> Result<PathBuf> {
    if ProgressiveRoot::is_root(run_dir) {
        let root = ProgressiveRoot::read(run_dir)?;
        for (_, stage) in &root.stages {
            write_page(&stage.dir, &run_page::render(stage, Some(&root))?)?;
        }
        return write_page(run_dir, &root_page::render(&root)?);
    }
    if !RunDir::is_run(run_dir) {
        bail!(
            "{} is neither a run directory (no training_options.json) nor a progressive schedule \
             root (no progressive.json)",
            run_dir.display()
        );
    }
    let run = RunDir::read(run_dir)?;
    match root_of_stage(run_dir, &run.options) {
        Some(root_dir) => {
            let root = ProgressiveRoot::read(&root_dir)?;
            let page = write_page(run_dir, &run_page::render(&run, Some(&root))?)?;
            write_page(&root_dir, &root_page::render(&root)?)?;
            Ok(page)
        }
        None => write_page(run_dir, &run_page::render(&run, None)?),
    }
}

/// Writes one page overlaying the metric curves (and img/s) of `runs` to `out` (atomically),
/// and returns `out`. Each run is a run directory or a progressive root (its stages joined
/// into one curve).
pub fn write_comparison(runs: &[PathBuf], out: &Path) -> Result<PathBuf> {
    // The page's directory exists first: links to the runs' pages are made relative to it.
    if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let page = compare::render(runs, out)?;
    crate::util::write_atomic(out, |f| Ok(f.write_all(page.as_bytes())?))?;
    Ok(out.to_path_buf())
}

fn write_page(dir: &Path, page: &str) -> Result<PathBuf> {
    let path = dir.join(REPORT_FILE);
    crate::util::write_atomic(&path, |f| Ok(f.write_all(page.as_bytes())?))?;
    Ok(path)
}

/// A number as a table shows it: four significant digits, or what is wrong with it.
fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return "non-finite".to_string();
    }
    let magnitude = v.abs();
    if magnitude >= 1000.0 || magnitude == 0.0 {
        format!("{v:.0}")
    } else if magnitude >= 100.0 {
        format!("{v:.1}")
    } else if magnitude >= 10.0 {
        format!("{v:.2}")
    } else if magnitude >= 0.01 {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

/// kimg with the precision training logs it.
fn fmt_kimg(kimg: f64) -> String {
    format!("{kimg:.3}")
}

/// A Unix time as `YYYY-MM-DD HH:MM UTC`.
fn fmt_utc(unix_s: f64) -> String {
    let secs = unix_s.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a proleptic Gregorian date, by 400-year eras of 146,097 days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// A duration in seconds as hours and minutes (or seconds when short).
fn fmt_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "unknown".to_string();
    }
    let s = secs.round() as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

fn now_unix_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The median of the finite values (None when there are none).
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// `target` as a link from a page in `from_dir`: relative when both resolve on disk, absolute
/// otherwise. Components are joined with '/', as URLs need.
fn href(from_dir: &Path, target: &Path) -> String {
    let (Ok(from), Ok(to)) = (from_dir.canonicalize(), target.canonicalize()) else {
        return target.display().to_string();
    };
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); from.len() - common];
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().to_string()),
    );
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(fmt_utc(0.0), "1970-01-01 00:00 UTC");
        assert_eq!(fmt_utc(951_782_400.0), "2000-02-29 00:00 UTC");
        assert_eq!(fmt_utc(1_796_431_794.65), "2026-12-05 00:49 UTC");
    }

    #[test]
    fn values_keep_four_digits() {
        assert_eq!(fmt_value(305.576_775), "305.6");
        assert_eq!(fmt_value(1.045_100_1), "1.0451");
        assert_eq!(fmt_value(0.003_5), "3.500e-3");
        assert_eq!(fmt_value(f64::NAN), "non-finite");
    }

    #[test]
    fn links_are_relative() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a/b");
        let c = tmp.path().join("c");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join("report.html"), "").unwrap();
        assert_eq!(href(&a, &c.join("report.html")), "../../c/report.html");
    }
}
