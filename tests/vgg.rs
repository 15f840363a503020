//! VGG-16 `features` against torchvision==0.26.0 (plain) and antialiased-cnns==0.3 (anti-aliased,
//! filter size 4): tiny random networks compared output by output (and input gradient) with
//! fixtures from `scripts/fixtures/vgg.py`, and the real VGG-16's parameter count and shapes.
use std::collections::HashMap;
use tch::nn::VarStore;
use tch::{Device, Tensor};
use vagan::backbones::vgg::{is_unused_key, Vgg, VggConfig};

mod common;
use common::{as_i64, load_strict, rand_images, rel_diff, shape};
use vagan::backbones::bank::Backbone;

const FIXTURES: &str = "vgg";

fn load(name: &str) -> HashMap<String, Tensor> {
    common::load_fixture(FIXTURES, name)
}

fn check_tiny(antialiased: bool, kind: &str) {
    let cfg = VggConfig::tiny(antialiased);
    let mut vs = VarStore::new(Device::Cpu);
    let net = Vgg::new(vs.root(), &cfg);
    // The blur filters are set at construction, equal to the reference's buffers.
    let weights = load(&format!("tiny_{kind}.safetensors"));
    for (name, t) in &weights {
        if name.ends_with(".filt") {
            assert_eq!(rel_diff(&vs.variables()[name], t), 0.0, "{name}");
        }
    }
    // Every file tensor has a variable and every variable a tensor, with equal shapes.
    load_strict(&vs, &weights, "fixture");
    vs.freeze();

    let io = load(&format!("tiny_{kind}_io.safetensors"));
    common::assert_map_pooled_match(&io, &vs, kind, |x| {
        let out = net.forward(x);
        (out.map, out.pooled)
    });
}

#[test]
fn tiny_plain_network_matches_torchvision() {
    check_tiny(false, "plain");
}

#[test]
fn tiny_antialiased_network_matches_antialiased_cnns() {
    check_tiny(true, "antialiased");
}

/// The antialiased-cnns release files nest the state dict under `state_dict`: the bank's
/// `vgg16_antialiased` loads that layout (here the tiny configuration, from a file written so).
#[test]
fn bank_loads_the_antialiased_cnns_release_layout() {
    let nested: Vec<(String, Tensor)> = load("tiny_antialiased.safetensors")
        .into_iter()
        .map(|(k, v)| (format!("state_dict.{k}"), v))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("nested.safetensors");
    vagan::weights::save(&file, &nested, &HashMap::new()).unwrap();
    let b = Backbone::tiny("vgg16_antialiased", Device::Cpu).unwrap();
    b.load_weights(&file).unwrap();
    let io = load("tiny_antialiased_io.safetensors");
    let f = tch::no_grad(|| b.forward(&io["images"]));
    assert!(rel_diff(&f.maps[0], &io["map"]) < 1e-4);
    assert!(rel_diff(&f.pooled, &io["pooled"]) < 1e-4);
}

#[test]
fn grey_images_are_repeated_to_rgb() {
    tch::manual_seed(1);
    let vs = VarStore::new(Device::Cpu);
    let net = Vgg::new(vs.root(), &VggConfig::tiny(true));
    let grey = rand_images([2, 1, 29, 31]);
    let a = tch::no_grad(|| net.forward(&grey));
    let b = tch::no_grad(|| net.forward(&grey.repeat([1, 3, 1, 1])));
    assert_eq!(a.map.size(), [2, 32, 7, 7]);
    assert_eq!(rel_diff(&a.map, &b.map), 0.0);
}

#[test]
fn classifier_keys_are_recognised() {
    for k in [
        "classifier.0.weight",
        "pre_logits.fc1.weight",
        "head.fc.bias",
    ] {
        assert!(is_unused_key(k), "{k}");
    }
    assert!(!is_unused_key("features.0.weight"));
}

#[test]
fn real_vgg16_matches_reference_counts_and_shapes() {
    let counts = common::load_json(FIXTURES, "param_counts.json");
    for (key, cfg) in [
        ("plain", VggConfig::vgg16()),
        ("antialiased", VggConfig::vgg16_antialiased()),
    ] {
        let reference = &counts[key];
        assert_eq!(cfg.out_channels(), 512);
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let net = Vgg::new(vs.root(), &cfg);
        let vars = vs.variables();
        let total: i64 = vars.values().map(|v| v.numel() as i64).sum();
        let trainable: i64 = vs
            .trainable_variables()
            .iter()
            .map(|v| v.numel() as i64)
            .sum();
        assert_eq!(trainable, 14_714_688, "{key}");
        assert_eq!(trainable, as_i64(&reference["parameters"]), "{key}");
        assert_eq!(total - trainable, as_i64(&reference["buffers"]), "{key}");
        assert_eq!(vars.len() as i64, as_i64(&reference["state_dict_keys"]));
        let last = reference["last_key"].as_str().unwrap();
        assert!(vars.contains_key(last), "{key}: {last}");
        for (h, w) in [(224, 224), (37, 45)] {
            let images = rand_images([1, 3, h, w]);
            let out = tch::no_grad(|| net.forward(&images));
            assert_eq!(out.map.size(), shape(&reference["map_shape"]), "{key}");
            assert_eq!(
                out.pooled.size(),
                shape(&reference["pooled_shape"]),
                "{key}"
            );
            assert_eq!(out.pooled.isfinite().all().int64_value(&[]), 1);
        }
    }
}
