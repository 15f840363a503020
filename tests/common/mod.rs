//! Helpers shared by the integration tests: tiny data sets and tiny training options, and the
//! backbone parity tests' fixture loading and relative-difference checks.
#![allow(dead_code)]
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use vagan::data::convert::{convert, ConvertOptions};
use vagan::train::TrainOptions;

/// `vagan train` flags for tiny networks on the CPU: a few steps take well under a second.
pub const TINY_TRAIN: &[&str] = &[
    "--batch",
    "4",
    "--cbase",
    "64",
    "--cmax",
    "16",
    "--z-dim",
    "8",
    "--w-dim",
    "8",
    "--tick",
    "0.016",
    "--snap",
    "1",
    "--grid",
    "2",
    "--device",
    "cpu",
    "--threads",
    "1",
];

/// Writes an MNIST-format IDX image file of `n` random `size`×`size` images.
pub fn write_idx(path: &Path, n: usize, size: usize, seed: u64) {
    let mut rng = vagan::util::SplitMix64::new(seed);
    let mut data = vec![0u8, 0, 8, 3];
    for v in [n, size, size] {
        data.extend_from_slice(&(v as u32).to_be_bytes());
    }
    data.extend((0..n * size * size).map(|_| rng.below(256) as u8));
    std::fs::File::create(path)
        .unwrap()
        .write_all(&data)
        .unwrap();
}

/// A dataset file of `n` random grey images at `res`×`res`, in `dir`.
pub fn tiny_dataset(dir: &Path, n: usize, res: u32) -> PathBuf {
    let idx = dir.join("images-idx3-ubyte");
    write_idx(&idx, n, res as usize, 7);
    let dest = dir.join("tiny.vds");
    convert(&idx, &dest, &ConvertOptions::new(res)).unwrap();
    dest
}

/// Every regulariser on, tiny networks: a few steps take well under a second on a CPU.
pub fn tiny_options(data: PathBuf) -> TrainOptions {
    TrainOptions {
        data,
        kimg: 0.08,
        batch: 4,
        tick_kimg: 0.04,
        snap: 1,
        seed: 3,
        cbase: 64,
        cmax: 16,
        z_dim: 8,
        w_dim: 8,
        map_layers: 2,
        glr: 0.002,
        dlr: 0.002,
        gamma: 1.0,
        pl_weight: 2.0,
        style_mixing: 0.9,
        ema_kimg: 0.01,
        ema_rampup: Some(0.05),
        mbstd_group: 4,
        mirror: true,
        diffaug: "color,translation,cutout".into(),
        grid: 2,
        cv: None,
        stage: None,
        metrics: Vec::new(),
    }
}

/// `tests/fixtures/<dir>/<name>`.
pub fn fixture(dir: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name)
}

/// The tensors of the safetensors fixture `tests/fixtures/<dir>/<name>`, by name.
pub fn load_fixture(dir: &str, name: &str) -> HashMap<String, Tensor> {
    let (tensors, _) = vagan::weights::load(&fixture(dir, name)).unwrap();
    tensors.into_iter().collect()
}

/// The JSON fixture `tests/fixtures/<dir>/<name>` (the reference parameter counts and shapes).
pub fn load_json(dir: &str, name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(dir, name)).unwrap()).unwrap()
}

/// A JSON integer.
pub fn as_i64(v: &serde_json::Value) -> i64 {
    v.as_i64().unwrap()
}

/// A JSON array of integers, as a tensor shape.
pub fn shape(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(as_i64).collect()
}

/// Every file tensor must have a variable and every variable a tensor, with equal shapes.
pub fn load_strict(vs: &VarStore, tensors: &HashMap<String, Tensor>, label: &str) {
    vagan::weights::load_into(vs, tensors, label, |_| false).unwrap();
}

/// Uniform random images in [−1, 1) on the CPU.
pub fn rand_images(size: [i64; 4]) -> Tensor {
    Tensor::rand(size, (Kind::Float, Device::Cpu)) * 2.0 - 1.0
}

/// max |a − b| / max |b|.
pub fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    let a = a.detach().to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    let num = (&a - &b).abs().max().double_value(&[]);
    let den = b.abs().max().double_value(&[]);
    assert!(den > 0.0);
    num / den
}

/// Prints every check's max relative difference (each name after `print_prefix`), then asserts
/// each is within 1e-4 relative (each name after `assert_prefix`).
pub fn assert_rel_within_1e4<S: AsRef<str>>(
    checks: &[(S, f64)],
    print_prefix: &str,
    assert_prefix: &str,
) {
    for (name, d) in checks {
        let name = name.as_ref();
        println!("{print_prefix}{name}: max relative difference {d:.3e}");
    }
    for (name, d) in checks {
        let name = name.as_ref();
        assert!(
            *d < 1e-4,
            "{assert_prefix}{name}: relative difference {d:e}"
        );
    }
}

/// No gradient reaches the frozen network.
pub fn assert_frozen(vs: &VarStore) {
    for v in vs.trainable_variables() {
        assert!(!v.requires_grad());
    }
}

/// The comparison shared by the single-map backbones (Swin, VGG): `forward` runs the network on
/// the fixture's images; its map and pooled vector, and the input gradient of sum(map·r), must
/// match the reference within 1e-4 relative, and the frozen weights must get no gradient.
pub fn assert_map_pooled_match(
    io: &HashMap<String, Tensor>,
    vs: &VarStore,
    label: &str,
    forward: impl Fn(&Tensor) -> (Tensor, Tensor),
) {
    let images = io["images"].set_requires_grad(true);
    assert_eq!(images.size(), [2, 3, 45, 37]);
    let (map, pooled) = forward(&images);
    let mut checks = vec![
        ("map", rel_diff(&map, &io["map"])),
        ("pooled", rel_diff(&pooled, &io["pooled"])),
    ];
    (&map * &io["r"]).sum(Kind::Float).backward();
    checks.push(("input_grad", rel_diff(&images.grad(), &io["input_grad"])));
    let prefix = format!("{label} ");
    assert_rel_within_1e4(&checks, &prefix, &prefix);
    assert_frozen(vs);
}

/// Held by every test that trains: the training loop reseeds libtorch's global generator,
/// which tests running on parallel threads of one process would otherwise share.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Trains `straight` in one go and in two halves (a snapshot after `straight.kimg / 2`, a new
/// trainer resuming from it), asserts that both end with identical tensors and counters, and
/// returns the final snapshot.
pub fn assert_resume_is_exact(
    straight: vagan::train::TrainOptions,
    tmp: &std::path::Path,
) -> std::path::PathBuf {
    let _serial = serial();
    let dev = tch::Device::Cpu;
    let mut a = vagan::train::Trainer::new(straight.clone(), &tmp.join("a"), dev, None).unwrap();
    let a_last = a.run(false).unwrap();

    let mut half = straight.clone();
    half.kimg = straight.kimg / 2.0;
    let half_nimg = (half.kimg * 1000.0).round() as u64;
    let mut b = vagan::train::Trainer::new(half, &tmp.join("b"), dev, None).unwrap();
    let b_mid = b.run(false).unwrap();
    assert!(
        b_mid.ends_with(vagan::train::snapshot::file_name(half_nimg)),
        "{}",
        b_mid.display()
    );
    drop(b);
    let mut b =
        vagan::train::Trainer::new(straight.clone(), &tmp.join("b"), dev, Some(&b_mid)).unwrap();
    assert_eq!(b.state.batch_idx, half_nimg / straight.batch as u64);
    let b_last = b.run(false).unwrap();

    let (sa, sb) = (
        vagan::train::snapshot::Snapshot::load(&a_last).unwrap(),
        vagan::train::snapshot::Snapshot::load(&b_last).unwrap(),
    );
    let (ta, _) = vagan::weights::load(&a_last).unwrap();
    let (tb, _) = vagan::weights::load(&b_last).unwrap();
    assert_eq!(ta.len(), tb.len());
    for ((na, xa), (nb, xb)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        assert!(
            xa.equal(xb),
            "tensor {na} differs after resume (max abs diff {})",
            (xa - xb).abs().max().double_value(&[])
        );
    }
    let (mut ma, mut mb) = (sa.meta.state.clone(), sb.meta.state.clone());
    ma.total_time_s = 0.0;
    mb.total_time_s = 0.0;
    assert_eq!(ma, mb);
    assert_eq!(ma.batch_idx, 2 * half_nimg / straight.batch as u64);
    // Training moved the weights: the comparison above is not between two untouched networks.
    let init = vagan::train::Trainer::new(straight, &tmp.join("c"), dev, None).unwrap();
    init.save_snapshot().unwrap();
    let (tc, _) =
        vagan::weights::load(&vagan::train::snapshot::latest(&tmp.join("c")).unwrap()).unwrap();
    for prefix in ["G.", "CV."] {
        let changed = ta
            .iter()
            .zip(&tc)
            .filter(|((n, _), _)| n.starts_with(prefix))
            .any(|((_, x), (_, y))| !x.equal(y));
        let present = ta.iter().any(|(n, _)| n.starts_with(prefix));
        assert!(changed || !present, "training did not change {prefix}");
    }
    a_last
}
