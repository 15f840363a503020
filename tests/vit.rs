//! CLIP ViT-B/32 and DINO ViT-B/16 (src/backbones/vit.rs) against fixtures from
//! `scripts/fixtures/vit.py`: tiny random networks in each checkpoint layout (OpenAI CLIP and
//! transformers CLIP, DINO and transformers ViT), compared level by level and by input gradient
//! with the references (the OpenAI CLIP code vendored in vision-aided-loss 0.1.0, split at the taps
//! as its `forward_custom`; transformers' `CLIPVisionModelWithProjection` and `ViTModel`), and the
//! real configurations' parameter counts and output shapes.
use std::collections::HashMap;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use vagan::backbones::vit::{convert_keys, KeyLayout, ViT, ViTConfig};

mod common;
use common::{as_i64, assert_rel_within_1e4, load_strict, rand_images, rel_diff, shape};

const FIXTURES: &str = "vit";

fn load(name: &str) -> HashMap<String, Tensor> {
    common::load_fixture(FIXTURES, name)
}

/// Builds the network, converts the checkpoint from `layout` and loads it strictly: every
/// converted tensor must find a variable and every variable a tensor.
fn network(cfg: &ViTConfig, file: &str, layout: KeyLayout) -> (VarStore, ViT) {
    let mut vs = VarStore::new(Device::Cpu);
    let net = ViT::new(vs.root(), cfg);
    let raw = load(file);
    assert_eq!(KeyLayout::detect(raw.keys()), Some(layout), "{file}");
    let tensors = convert_keys(layout, raw).unwrap();
    load_strict(&vs, &tensors, file);
    vs.freeze();
    (vs, net)
}

fn check_against(cfg: &ViTConfig, file: &str, layout: KeyLayout, io_file: &str) {
    let (vs, net) = network(cfg, file, layout);
    let io = load(io_file);
    let images = io["images"].set_requires_grad(true);
    assert_eq!(images.size(), [2, 3, 29, 35]);
    let levels = net.forward(&images).levels();
    assert_eq!(levels.len(), 3);
    let mut checks = Vec::new();
    let mut loss = Tensor::zeros([], (Kind::Float, Device::Cpu));
    for (i, level) in levels.iter().enumerate() {
        checks.push((
            format!("level{i}"),
            rel_diff(level, &io[&format!("level{i}")]),
        ));
        loss += (level * &io[&format!("r{i}")]).sum(Kind::Float);
    }
    loss.backward();
    checks.push((
        "input_grad".into(),
        rel_diff(&images.grad(), &io["input_grad"]),
    ));
    assert_rel_within_1e4(
        &checks,
        &format!("{} ({file}) ", cfg.name),
        &format!("{file} "),
    );
    // The frozen network gets no gradient.
    for v in vs.variables().values() {
        assert!(!v.requires_grad());
        assert!(!v.grad().defined());
    }
}

#[test]
fn clip_openai_layout_matches_vendored_clip() {
    check_against(
        &ViTConfig::clip_tiny(),
        "clip_openai.safetensors",
        KeyLayout::OpenAiClip,
        "clip_io.safetensors",
    );
}

#[test]
fn clip_transformers_layout_matches_vendored_clip() {
    check_against(
        &ViTConfig::clip_tiny(),
        "clip_hf.safetensors",
        KeyLayout::HfClip,
        "clip_io.safetensors",
    );
}

#[test]
fn dino_layout_matches_transformers_vit() {
    check_against(
        &ViTConfig::dino_tiny(),
        "dino.safetensors",
        KeyLayout::Dino,
        "dino_io.safetensors",
    );
}

#[test]
fn dino_transformers_layout_matches_transformers_vit() {
    check_against(
        &ViTConfig::dino_tiny(),
        "dino_hf.safetensors",
        KeyLayout::HfViT,
        "dino_io.safetensors",
    );
}

#[test]
fn prefixed_layouts_convert_to_the_same_tensors() {
    let cfg = ViTConfig::dino_tiny();
    // transformers' ViTForImageClassification-style `vit.` prefix and classifier.
    let mut prefixed: HashMap<String, Tensor> = load("dino_hf.safetensors")
        .into_iter()
        .map(|(k, v)| (format!("vit.{k}"), v))
        .collect();
    prefixed.insert(
        "classifier.weight".into(),
        Tensor::zeros([2, 16], (Kind::Float, Device::Cpu)),
    );
    assert_eq!(KeyLayout::detect(prefixed.keys()), Some(KeyLayout::HfViT));
    let a = convert_keys(KeyLayout::HfViT, prefixed).unwrap();
    // DINO training checkpoints: `module.backbone.` (teacher/student) or `backbone.` and a head.
    let mut wrapped: HashMap<String, Tensor> = load("dino.safetensors")
        .into_iter()
        .map(|(k, v)| (format!("module.backbone.{k}"), v))
        .collect();
    wrapped.insert(
        "head.last_layer.weight".into(),
        Tensor::zeros([3, 4], (Kind::Float, Device::Cpu)),
    );
    let b = convert_keys(KeyLayout::Dino, wrapped).unwrap();
    let mut keys_a: Vec<_> = a.keys().collect();
    let mut keys_b: Vec<_> = b.keys().collect();
    keys_a.sort();
    keys_b.sort();
    assert_eq!(keys_a, keys_b);
    for (k, t) in &a {
        assert_eq!(rel_diff(t, &b[k]), 0.0, "{k}");
    }
    let vs = VarStore::new(Device::Cpu);
    let _net = ViT::new(vs.root(), &cfg);
    load_strict(&vs, &a, "prefixed");
}

#[test]
fn unknown_or_incomplete_keys_are_reported() {
    let cfg = ViTConfig::clip_tiny();
    let vs = VarStore::new(Device::Cpu);
    let _net = ViT::new(vs.root(), &cfg);
    // An unknown vision key is kept, so loading names it.
    let mut t = load("clip_openai.safetensors");
    // OpenAI's text tower has resblocks too: they are dropped, and do not confuse detection.
    t.insert(
        "transformer.resblocks.0.ln_1.weight".into(),
        Tensor::zeros([4], (Kind::Float, Device::Cpu)),
    );
    assert_eq!(KeyLayout::detect(t.keys()), Some(KeyLayout::OpenAiClip));
    t.insert(
        "visual.extra.weight".into(),
        Tensor::zeros([1], (Kind::Float, Device::Cpu)),
    );
    let converted = convert_keys(KeyLayout::OpenAiClip, t).unwrap();
    let err = vagan::weights::load_into(&vs, &converted, "x", |_| false).unwrap_err();
    assert!(format!("{err}").contains("extra.weight"), "{err}");
    // A missing k projection cannot be fused.
    let mut t = load("clip_hf.safetensors");
    t.remove("vision_model.encoder.layers.1.self_attn.k_proj.weight");
    let err = convert_keys(KeyLayout::HfClip, t).unwrap_err();
    assert!(format!("{err}").contains("block 1"), "{err}");
}

#[test]
fn grey_images_are_repeated_to_rgb() {
    tch::manual_seed(1);
    for cfg in [ViTConfig::clip_tiny(), ViTConfig::dino_tiny()] {
        let vs = VarStore::new(Device::Cpu);
        let net = ViT::new(vs.root(), &cfg);
        let grey = rand_images([2, 1, 29, 31]);
        let a = net.forward(&grey).levels();
        let b = net.forward(&grey.repeat([1, 3, 1, 1])).levels();
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(rel_diff(x, y), 0.0);
        }
    }
}

#[test]
fn real_configurations_match_reference_counts_and_shapes() {
    let counts = common::load_json(FIXTURES, "param_counts.json");
    for (key, cfg) in [
        ("clip_b32", ViTConfig::clip_b32()),
        ("dino_b16", ViTConfig::dino_b16()),
    ] {
        let reference = &counts[key];
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let net = ViT::new(vs.root(), &cfg);
        let vars = vs.variables();
        let total: i64 = vars.values().map(|v| v.numel() as i64).sum();
        assert_eq!(total, as_i64(&reference["parameters"]), "{key}: parameters");
        // transformers' ViT has separate q, k, v (weight and bias) where we fuse them.
        let fused = if key == "dino_b16" { 4 * cfg.layers } else { 0 };
        assert_eq!(
            vars.len() as i64,
            as_i64(&reference["state_dict_keys"]) - fused,
            "{key}: keys"
        );
        if key == "clip_b32" {
            assert_eq!(total, 87_849_216);
        }
        let expected: Vec<Vec<i64>> = reference["level_shapes"]
            .as_array()
            .unwrap()
            .iter()
            .map(shape)
            .collect();
        let images = rand_images([1, 3, 45, 37]);
        let levels = tch::no_grad(|| net.forward(&images).levels());
        let shapes: Vec<Vec<i64>> = levels.iter().map(|t| t.size()).collect();
        assert_eq!(shapes, expected, "{key}");
        for t in &levels {
            assert_eq!(t.isfinite().all().int64_value(&[]), 1, "{key}: not finite");
        }
    }
}
