//! EfficientNet-Lite against the reference package `efficientnet-lite-pytorch==0.1.0`: a tiny random
//! network compared output by output (and input gradient) with fixtures from
//! `scripts/fixtures/efficientnet_lite.py`, and the real lite0/1/2 configurations' parameter
//! counts and output shapes.
use std::collections::HashMap;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use vagan::backbones::efficientnet_lite::{EfficientNetLite, EfficientNetLiteConfig};

mod common;
use common::{
    as_i64, assert_frozen, assert_rel_within_1e4, load_strict, rand_images, rel_diff, shape,
};

const FIXTURES: &str = "efficientnet_lite";

fn load(name: &str) -> HashMap<String, Tensor> {
    common::load_fixture(FIXTURES, name)
}

#[test]
fn tiny_network_matches_reference_outputs_and_input_gradient() {
    let cfg = EfficientNetLiteConfig::tiny();
    let mut vs = VarStore::new(Device::Cpu);
    let net = EfficientNetLite::new(vs.root(), &cfg);
    load_strict(&vs, &load("tiny.safetensors"), "fixture");
    vs.freeze();

    let io = load("tiny_io.safetensors");
    let images = io["images"].set_requires_grad(true);
    assert_eq!(images.size(), [2, 3, 37, 45]);
    let out = net.forward(&images);
    let logits = net.classify(&out.pooled);

    let mut checks = Vec::new();
    assert_eq!(out.features.len(), 4);
    for (i, f) in out.features.iter().enumerate() {
        checks.push((
            format!("feature{i}"),
            rel_diff(f, &io[&format!("feature{i}")]),
        ));
    }
    checks.push((
        "final_map".into(),
        rel_diff(&out.final_map, &io["final_map"]),
    ));
    checks.push(("pooled".into(), rel_diff(&out.pooled, &io["pooled"])));
    checks.push(("logits".into(), rel_diff(&logits, &io["logits"])));
    (&out.final_map * &io["r"]).sum(Kind::Float).backward();
    checks.push((
        "input_grad".into(),
        rel_diff(&images.grad(), &io["input_grad"]),
    ));

    assert_rel_within_1e4(&checks, "", "");
    // No gradient reaches the frozen network.
    assert_frozen(&vs);
}

#[test]
fn grey_images_are_repeated_to_rgb() {
    tch::manual_seed(1);
    let vs = VarStore::new(Device::Cpu);
    let net = EfficientNetLite::new(vs.root(), &EfficientNetLiteConfig::tiny());
    let grey = rand_images([2, 1, 29, 31]);
    let a = net.forward(&grey);
    let b = net.forward(&grey.repeat([1, 3, 1, 1]));
    assert_eq!(a.final_map.size(), [2, 1280, 2, 2]);
    assert_eq!(rel_diff(&a.final_map, &b.final_map), 0.0);
    for (x, y) in a.features.iter().zip(&b.features) {
        assert_eq!(rel_diff(x, y), 0.0);
    }
}

#[test]
fn real_configurations_match_reference_counts_and_shapes() {
    let counts = common::load_json(FIXTURES, "param_counts.json");
    for (key, cfg) in [
        ("lite0", EfficientNetLiteConfig::lite0()),
        ("lite1", EfficientNetLiteConfig::lite1()),
        ("lite2", EfficientNetLiteConfig::lite2()),
    ] {
        let reference = &counts[key];
        assert_eq!(cfg.resolution, as_i64(&reference["resolution"]), "{key}");
        let blocks: i64 = cfg.stages.iter().map(|s| s.repeats).sum();
        assert_eq!(blocks, as_i64(&reference["blocks"]), "{key}: blocks");

        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let net = EfficientNetLite::new(vs.root(), &cfg);
        let vars = vs.variables();
        let total: i64 = vars.values().map(|v| v.numel() as i64).sum();
        let trainable: i64 = vs
            .trainable_variables()
            .iter()
            .map(|v| v.numel() as i64)
            .sum();
        assert_eq!(
            vars.len() as i64,
            as_i64(&reference["state_dict_keys"]),
            "{key}: keys"
        );
        assert_eq!(
            trainable,
            as_i64(&reference["parameters"]),
            "{key}: parameters"
        );
        assert_eq!(
            total - trainable,
            as_i64(&reference["buffers"]),
            "{key}: buffers"
        );

        // Native resolution and a smaller, non-square input resized to it give the same shapes.
        let res = cfg.resolution;
        for (h, w) in [(res, res), (37, 45)] {
            let images = rand_images([1, 3, h, w]);
            let out = tch::no_grad(|| net.forward(&images));
            let logits = tch::no_grad(|| net.classify(&out.pooled));
            let feature_shapes: Vec<Vec<i64>> = out.features.iter().map(|f| f.size()).collect();
            let expected: Vec<Vec<i64>> = reference["feature_shapes"]
                .as_array()
                .unwrap()
                .iter()
                .map(shape)
                .collect();
            assert_eq!(feature_shapes, expected, "{key} {h}x{w}: features");
            assert_eq!(out.final_map.size(), shape(&reference["final_map_shape"]));
            assert_eq!(out.pooled.size(), shape(&reference["pooled_shape"]));
            assert_eq!(logits.size(), shape(&reference["logits_shape"]));
            let finite = logits.isfinite().all().int64_value(&[]) == 1;
            assert!(finite, "{key}: logits not finite");
        }
    }
}
