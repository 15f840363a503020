//! Swin against timm==1.0.31's SwinTransformer and transformers==4.46.3's SwinModel: tiny random
//! networks (shifted, masked windows and the one-window rule) compared output by output (and
//! input gradient) with fixtures from `scripts/fixtures/swin.py`, the checkpoint-layout
//! conversions, and the real Swin-T's parameter count and shapes.
use std::collections::HashMap;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use vagan::backbones::swin::{convert_checkpoint, is_unused_key, Swin, SwinConfig};

mod common;
use common::{as_i64, load_strict, rand_images, rel_diff, shape};

const FIXTURES: &str = "swin";

fn load(name: &str) -> HashMap<String, Tensor> {
    common::load_fixture(FIXTURES, name)
}

/// Loads `weights` (already in any supported layout) strictly after conversion and compares the
/// whole pipeline with `io`.
fn check(weights: HashMap<String, Tensor>, io_name: &str, label: &str) {
    let mut vs = VarStore::new(Device::Cpu);
    let net = Swin::new(vs.root(), &SwinConfig::tiny());
    let converted = convert_checkpoint(weights);
    vagan::weights::load_into(&vs, &converted, label, is_unused_key).unwrap();
    vs.freeze();
    let io = load(io_name);
    common::assert_map_pooled_match(&io, &vs, label, |x| {
        let out = net.forward(x);
        (out.map, out.pooled)
    });
}

#[test]
fn tiny_network_matches_timm() {
    let weights = load("tiny_timm.safetensors");
    // timm >= 0.9 names are this module's own: no conversion needed.
    let vs = VarStore::new(Device::Cpu);
    let _net = Swin::new(vs.root(), &SwinConfig::tiny());
    load_strict(&vs, &weights, "timm");
    check(weights, "tiny_timm_io.safetensors", "timm");
}

/// The original Swin / MoBY layout: patch merging at the end of stage I, `model.encoder.` prefix,
/// a momentum encoder and projector to drop, the index buffers present (the renaming follows
/// timm's own `checkpoint_filter_fn`).
#[test]
fn tiny_network_in_moby_layout() {
    let mut moby = HashMap::new();
    for (k, v) in load("tiny_timm.safetensors") {
        let k = match k.strip_prefix("layers.1.downsample.") {
            Some(rest) => format!("layers.0.downsample.{rest}"),
            None => k,
        };
        moby.insert(format!("model.encoder_k.{k}"), v.copy());
        moby.insert(format!("model.encoder.{k}"), v);
    }
    moby.insert(
        "model.encoder.layers.0.blocks.0.attn.relative_position_index".into(),
        Tensor::zeros([16, 16], (Kind::Int64, Device::Cpu)),
    );
    moby.insert(
        "model.projector.linear1.weight".into(),
        Tensor::zeros([4, 4], (Kind::Float, Device::Cpu)),
    );
    check(moby, "tiny_timm_io.safetensors", "moby");
}

#[test]
fn tiny_network_matches_transformers() {
    let mut hf = HashMap::new();
    for (k, v) in load("tiny_hf.safetensors") {
        hf.insert(format!("swin.{k}"), v);
    }
    hf.insert(
        "classifier.weight".into(),
        Tensor::zeros([2, 32], (Kind::Float, Device::Cpu)),
    );
    check(hf, "tiny_hf_io.safetensors", "transformers");
}

#[test]
fn grey_images_are_repeated_to_rgb() {
    tch::manual_seed(1);
    let vs = VarStore::new(Device::Cpu);
    let net = Swin::new(vs.root(), &SwinConfig::tiny());
    let grey = rand_images([2, 1, 29, 31]);
    let a = tch::no_grad(|| net.forward(&grey));
    let b = tch::no_grad(|| net.forward(&grey.repeat([1, 3, 1, 1])));
    assert_eq!(a.map.size(), [2, 32, 4, 4]);
    assert_eq!(rel_diff(&a.map, &b.map), 0.0);
}

#[test]
fn real_swin_t_matches_reference_counts_and_shapes() {
    let counts = common::load_json(FIXTURES, "param_counts.json");
    let cfg = SwinConfig::swin_t();
    assert_eq!(cfg.out_channels(), 768);
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let net = Swin::new(vs.root(), &cfg);
    let vars = vs.variables();
    let total: i64 = vars.values().map(|v| v.numel() as i64).sum();
    // timm's 28,288,354 less the 1000-class head (768·1000 + 1000).
    assert_eq!(total, 28_288_354 - 769_000);
    assert_eq!(total, as_i64(&counts["parameters"]));
    assert_eq!(vars.len() as i64, as_i64(&counts["state_dict_keys"]));
    for (h, w) in [(224, 224), (37, 45)] {
        let images = rand_images([1, 3, h, w]);
        let out = tch::no_grad(|| net.forward(&images));
        assert_eq!(out.map.size(), shape(&counts["map_shape"]));
        assert_eq!(out.pooled.size(), shape(&counts["pooled_shape"]));
        assert_eq!(out.pooled.isfinite().all().int64_value(&[]), 1);
    }
}
