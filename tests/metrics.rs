//! FID and KID against clean-fid 0.1.35 run with the same Inception archive
//! (`scripts/fixtures/clean_fid.py` made `tests/fixtures/metrics/`): the resizers on synthetic
//! patterns, the network on 299×299 inputs, whole-pipeline features, FID and KID in both modes,
//! the real-statistics cache, the training evaluator, and the command line.
//!
//! Every test but the resizers' needs the real weights: `vagan weights fetch inception_fid`.
mod common;

use common::{fixture, load_fixture, load_json, rel_diff};
use indicatif::ProgressBar;
use std::path::Path;
use std::process::Command;
use tch::{Device, Kind, Tensor};
use vagan::metrics::resize::{resize, INCEPTION_SIZE};
use vagan::metrics::{
    fid, kernel_distance, set_statistics, Covariance, FeatureExtractor, FidEvaluator, ImageSet,
    MetricOptions, Mode, StatsCache,
};
use vagan::weights::cache::Cache;

/// The relative tolerance of every comparison with clean-fid.
const TOLERANCE: f64 = 1e-4;

/// The Inception with the cached weights, or a failure that says how to get them.
fn extractor(mode: Mode) -> FeatureExtractor {
    let cache = Cache::open_default().unwrap();
    FeatureExtractor::load(&cache, mode, Device::Cpu).unwrap_or_else(|e| {
        panic!(
            "these tests need the FID Inception: run `vagan weights fetch inception_fid` ({e:#})"
        )
    })
}

/// uint8 `[C, H, W]`: (7x² + 13y + 101c + 3xy) mod 256, as `clean_fid.py`'s `pattern`.
fn pattern(height: i64, width: i64, channels: i64) -> Tensor {
    let opts = (Kind::Int64, Device::Cpu);
    let y = Tensor::arange(height, opts).view([1, -1, 1]);
    let x = Tensor::arange(width, opts).view([1, 1, -1]);
    let c = Tensor::arange(channels, opts).view([-1, 1, 1]);
    ((&x * &x * 7 + &y * 13 + &c * 101 + &x * &y * 3).remainder(256)).to_kind(Kind::Uint8)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn mode_key(mode: Mode) -> &'static str {
    match mode {
        Mode::Clean => "clean",
        Mode::LegacyTf => "legacy_tensorflow",
    }
}

fn assert_close(what: &str, ours: f64, reference: f64) {
    let rel = (ours - reference).abs() / reference.abs();
    println!("{what}: vagan {ours:.10}, clean-fid {reference:.10}, relative difference {rel:.2e}");
    assert!(
        rel <= TOLERANCE,
        "{what}: {ours} vs clean-fid's {reference}"
    );
}

#[test]
fn resizers_match_pil_and_nvidias_grid_sample() {
    let reference = load_fixture("metrics", "reference.safetensors");
    let indices = &reference["indices"];
    for (i, (h, w)) in [(37, 53), (61, 45), (331, 410)].into_iter().enumerate() {
        for mode in [Mode::Clean, Mode::LegacyTf] {
            let ours = resize(&pattern(h, w, 3).unsqueeze(0), mode, INCEPTION_SIZE).unwrap();
            let ours = ours
                .get(0)
                .index_select(1, indices)
                .index_select(2, indices);
            let expected = &reference[&format!("resize_{}_{i}", mode_key(mode))];
            let d = max_abs_diff(&ours, expected);
            println!("{mode} {h}×{w}: max |difference| {d:.2e} (0..255 scale)");
            assert!(d <= 1e-4, "{mode} resize of {h}×{w} differs by {d}");
        }
        // A grey image is resized once and repeated: the same as resizing its RGB copy.
        let grey = pattern(h, w, 1).unsqueeze(0);
        let as_grey = resize(&grey, Mode::Clean, INCEPTION_SIZE).unwrap();
        let as_rgb = resize(
            &grey.expand([1, 3, h, w], false),
            Mode::Clean,
            INCEPTION_SIZE,
        )
        .unwrap();
        assert_eq!(max_abs_diff(&as_grey, &as_rgb), 0.0);
    }
}

#[test]
fn network_features_match_the_archive() {
    let reference = load_fixture("metrics", "reference.safetensors");
    let extractor = extractor(Mode::Clean);
    let rgb = pattern(299, 299, 3);
    let grey = pattern(299, 299, 1).expand([3, 299, 299], false);
    let inputs = (Tensor::stack(&[rgb, grey], 0).to_kind(Kind::Float) - 128.0) / 128.0;
    let features = extractor.network(&inputs);
    let d = rel_diff(&features, &reference["features_patterns_299"]);
    println!("pool3 features of 299×299 patterns: max relative difference {d:.2e}");
    assert!(d <= TOLERANCE);
}

fn folder_set(name: &str) -> ImageSet {
    ImageSet::open(&fixture("metrics", name), "--test").unwrap()
}

/// Features of all fixture images, checked against clean-fid's first four, then FID and KID.
fn check_mode(mode: Mode) {
    let extractor = extractor(mode);
    let expected = load_json("metrics", "clean_fid.json")[mode_key(mode)].clone();
    let reference = load_fixture("metrics", "reference.safetensors");
    let measure = |name| {
        let mut set = folder_set(name);
        let n = set.available().unwrap();
        assert_eq!(n, 32);
        set_statistics(
            &mut set,
            n,
            &extractor,
            13,
            true,
            None,
            &ProgressBar::hidden(),
        )
        .unwrap()
    };
    let real = measure("real");
    let fake = measure("fake");
    let first4 = real.features.as_ref().unwrap().narrow(0, 0, 4);
    let d = rel_diff(
        &first4,
        &reference[&format!("features_{}_real_first4", mode_key(mode))],
    );
    println!("{mode}: features of the first 4 real images, max relative difference {d:.2e}");
    assert!(d <= TOLERANCE);
    let fid_value = fid(&real, &fake, Covariance::Unbiased);
    assert_close(
        &format!("{mode} FID"),
        fid_value,
        expected["fid"].as_f64().unwrap(),
    );
    let kid = kernel_distance(
        real.features.as_ref().unwrap(),
        fake.features.as_ref().unwrap(),
        100,
        1000,
        0,
    )
    .unwrap();
    assert_close(
        &format!("{mode} KID"),
        kid.mean,
        expected["kid"].as_f64().unwrap(),
    );
    assert!(kid.std < 1e-9, "whole-set subsets must agree");
}

#[test]
fn legacy_tf_fid_and_kid_match_clean_fid() {
    check_mode(Mode::LegacyTf);
}

#[test]
fn clean_fid_and_kid_match_clean_fid() {
    check_mode(Mode::Clean);
}

/// A dataset file of `n` random grey 16×16 images.
fn tiny_dataset(dir: &Path, n: usize) -> std::path::PathBuf {
    common::tiny_dataset(dir, n, 16)
}

#[test]
fn evaluator_caches_real_statistics_and_measures_generated_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_dataset(dir.path(), 6);
    let stats_cache = StatsCache::at(dir.path().join("stats"));
    let options = MetricOptions {
        device: Device::Cpu,
        batch: 4,
        ..MetricOptions::default()
    };
    let open = || {
        let mut set = ImageSet::open(&data, "--real").unwrap();
        FidEvaluator::new(
            extractor(Mode::Clean),
            &mut set,
            None,
            &options,
            Some(&stats_cache),
        )
        .unwrap()
    };
    let evaluator = open();
    assert_eq!(evaluator.real_count(), 6);
    let cached: Vec<_> = std::fs::read_dir(stats_cache.dir()).unwrap().collect();
    assert_eq!(
        cached.len(),
        1,
        "one statistics file per dataset, mode and count"
    );
    let dataset = vagan::data::Dataset::open(&data).unwrap();
    // The dataset's own images, as generator output in [-1, 1]: FID 0 up to rounding.
    let mut next = 0i64;
    let mut own_images = |n: usize| {
        let indices: Vec<i64> = (next..next + n as i64).collect();
        next += n as i64;
        Ok(dataset.images_u8(&indices).to_kind(Kind::Float) / 127.5 - 1.0)
    };
    let same = evaluator.fid(6, &mut own_images).unwrap();
    println!("FID of the real set against itself: {same:.3e}");
    assert!(same.abs() < 1e-6);
    // A second evaluator reads the cached statistics and agrees.
    let again = open();
    let noise =
        |n: usize| Ok(Tensor::rand([n as i64, 1, 16, 16], tch::kind::FLOAT_CPU) * 2.0 - 1.0);
    tch::manual_seed(5);
    let a = evaluator.fid(5, noise).unwrap();
    tch::manual_seed(5);
    let b = again.fid(5, noise).unwrap();
    assert!(a > 1.0 && (a - b).abs() < 1e-9 * a, "{a} vs {b}");
}

fn vagan() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vagan"))
}

#[test]
fn cli_fid_on_two_folders_prints_clean_fids_number() {
    let out = vagan()
        .args(["metrics", "fid", "--device", "cpu", "--real"])
        .arg(fixture("metrics", "real"))
        .arg("--fake")
        .arg(fixture("metrics", "fake"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stderr}\n(the FID Inception is needed: `vagan weights fetch inception_fid`)"
    );
    let printed: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let expected = load_json("metrics", "clean_fid.json")["clean"]["fid"]
        .as_f64()
        .unwrap();
    assert_close("vagan metrics fid", printed, expected);
    assert!(stderr.contains("32 real images"), "{stderr}");
}

fn cli_error(args: &[&str], real: &Path, fake: &Path) -> String {
    let out = vagan()
        .args(["metrics"])
        .args(args)
        .args(["--device", "cpu", "--no-cache", "--real"])
        .arg(real)
        .arg("--fake")
        .arg(fake)
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn cli_names_the_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["img000.png", "img001.png"] {
        std::fs::copy(fixture("metrics/real", name), dir.path().join(name)).unwrap();
    }
    std::fs::write(dir.path().join("img000b.png"), b"not a png").unwrap();
    let err = cli_error(&["kid"], dir.path(), &fixture("metrics", "fake"));
    assert!(
        err.contains("img000b.png") && err.contains("cannot decode"),
        "{err}"
    );
    assert!(err.contains("image 2 of 3"), "{err}");
}

#[test]
fn cli_says_when_a_folder_has_too_few_images() {
    let real = fixture("metrics", "real");
    let err = cli_error(&["fid", "--num", "40"], &real, &fixture("metrics", "fake"));
    assert!(
        err.contains("holds 32 images, 40 asked") && err.contains("--num"),
        "{err}"
    );
    assert!(err.contains("fake"), "{err}");
}

#[test]
fn cli_measures_a_snapshot_against_a_dataset_file_and_caches_the_real_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_dataset(dir.path(), 8);
    let run = dir.path().join("run");
    {
        let _serial = common::serial();
        let mut trainer =
            vagan::train::Trainer::new(common::tiny_options(data.clone()), &run, Device::Cpu, None)
                .unwrap();
        trainer.run(false).unwrap();
    }
    // A private VAGAN_HOME that sees the real weights cache.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::symlink(Cache::default_dir().unwrap(), home.join("weights")).unwrap();
    let measure = || {
        let out = vagan()
            .env("VAGAN_HOME", &home)
            .args([
                "metrics", "fid", "--device", "cpu", "--json", "--num", "5", "--real",
            ])
            .arg(&data)
            .arg("--fake")
            .arg(&run)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = measure();
    assert_eq!(first["num_real"], 8);
    assert_eq!(first["num_fake"], 5);
    assert!(first["fake"]
        .as_str()
        .unwrap()
        .contains("network-snapshot-"));
    let cached: Vec<_> = std::fs::read_dir(home.join("stats")).unwrap().collect();
    assert_eq!(cached.len(), 1);
    let second = measure();
    assert_eq!(
        first["value"], second["value"],
        "the same seeds, the cached real statistics"
    );
    assert!(first["value"].as_f64().unwrap() > 0.0);
}
