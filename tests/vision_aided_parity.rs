//! The vision-aided discriminator against the official package `vision-aided-loss==0.1.0`
//! (fixtures by `scripts/fixtures/vision_aided.py`): spectral-norm heads on the tiny CLIP and
//! the tiny anti-aliased VGG, every loss type, an ensemble of two networks and a
//! class-conditional head. In the package's order (D-real, D-fake, generator, each a power
//! iteration of every spectral norm) the losses and the gradients with respect to the images
//! must match within 1e-5 relative, and so must the spectral-norm vectors afterwards.
mod common;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};
use vagan::backbones::bank::{Backbone, Config};
use vagan::backbones::vgg::VggConfig;
use vagan::vision_aided::{
    Augment, Discriminator, Head, HeadConfig, HeadVariant, LossType, MlpD, MultiLevelDViT, SimpleD,
    Target,
};

/// The ensemble of a case with the package's initial head weights, and the package's name of
/// each head variable mapped to ours.
fn build(
    case: &serde_json::Value,
    init: &HashMap<String, Tensor>,
) -> (Discriminator, impl Fn(&str) -> String) {
    let num_classes = case["num_classes"].as_i64().unwrap();
    let cfg = HeadConfig {
        variant: HeadVariant::SpectralNorm,
        num_classes,
    };
    let mut d = Discriminator::new(cfg, Augment::None, Device::Cpu).unwrap();
    let cv_types: Vec<&str> = case["cv_type"].as_str().unwrap().split('+').collect();
    let losses =
        vagan::vision_aided::parse_loss_types(case["loss_type"].as_str().unwrap()).unwrap();
    let mut renames: Vec<(String, String)> = Vec::new();
    for (i, ((cv, loss), head)) in cv_types
        .iter()
        .zip(losses)
        .zip(case["heads"].as_array().unwrap())
        .enumerate()
    {
        let (name, backbone) = match *cv {
            "clip" => {
                let b = Backbone::tiny("clip_vit_b32", Device::Cpu).unwrap();
                b.load_weights(&common::fixture("vit", "clip_openai.safetensors"))
                    .unwrap();
                ("clip_vit_b32", b)
            }
            "vgg" => {
                let b = Backbone::with_config(
                    "vgg16",
                    &Config::Vgg(VggConfig::tiny(true)),
                    Device::Cpu,
                )
                .unwrap();
                b.load_weights(&common::fixture("vgg", "tiny_antialiased.safetensors"))
                    .unwrap();
                ("vgg16", b)
            }
            other => panic!("no tiny backbone for {other}"),
        };
        let int = |k: &str| head[k].as_i64().unwrap();
        let pip = format!("decoder.{i}.");
        let ours = format!("{name}.");
        let mut rename =
            |from: &str, to: &str| renames.push((format!("{pip}{from}"), format!("{ours}{to}")));
        rename("out.", "out.");
        rename("embed.weight", "embed");
        match head["class"].as_str().unwrap() {
            "MultiLevelDViT" => {
                for l in 0..2 {
                    rename(&format!("decoder.{l}.1."), &format!("level{l}.conv."));
                    rename(&format!("decoder.{l}.4."), &format!("level{l}.out."));
                }
                rename("decoder.2.0.", "fc.");
            }
            "SimpleD" => {
                rename("decoder.1.", "conv.");
                rename("decoder.4.", "fc.");
            }
            "MLPD" => rename("decoder.0.", "fc."),
            other => panic!("unknown head {other}"),
        }
        let class = head["class"].as_str().unwrap().to_string();
        d.add_with_head(backbone, loss, |vs, cfg, _| {
            Ok(match class.as_str() {
                "MultiLevelDViT" => Head::MultiLevel(MultiLevelDViT::new(
                    vs,
                    cfg,
                    int("level") as usize,
                    int("in_ch1"),
                    int("in_ch2"),
                    int("out_ch"),
                    int("down"),
                )),
                "SimpleD" => Head::Simple(SimpleD::new(
                    vs,
                    cfg,
                    int("in_ch"),
                    int("out_ch"),
                    int("out_size"),
                )),
                _ => Head::Mlp(MlpD::new(vs, cfg, int("in_ch"), int("out_ch"))),
            })
        })
        .unwrap();
    }
    d.set_kind(Kind::Double);
    let ours = move |pip: &str| -> String {
        renames
            .iter()
            .find_map(|(from, to)| {
                pip.strip_prefix(from.as_str())
                    .map(|rest| format!("{to}{rest}"))
            })
            .unwrap_or_else(|| panic!("no head variable for package key {pip}"))
    };
    // The blur filters are constants of both implementations.
    let tensors: HashMap<String, Tensor> = init
        .iter()
        .filter(|(k, _)| !k.ends_with(".filt"))
        .map(|(k, t)| (ours(k), t.shallow_clone()))
        .collect();
    vagan::weights::load_into(d.heads(), &tensors, "vision_aided fixture", |_| false).unwrap();
    (d, ours)
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let diff = (a - b).abs().max().double_value(&[]);
    diff / b.abs().max().double_value(&[]).max(1e-12)
}

fn check_case(name: &str, case: &serde_json::Value) {
    let inputs = common::load_fixture("vision_aided", "inputs.safetensors");
    let file = case["file"].as_str().unwrap();
    let all = common::load_fixture("vision_aided", file);
    let group = |prefix: &str| -> HashMap<String, Tensor> {
        all.iter()
            .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t.shallow_clone())))
            .collect()
    };
    let (mut d, ours) = build(case, &group("init."));
    let labels = case["c"]
        .is_string()
        .then(|| inputs["labels"].shallow_clone());
    for (call, images, target) in [
        ("d_real", "real", Target::Real),
        ("d_fake", "fake", Target::Fake),
        ("g", "fake", Target::Generator),
    ] {
        let x = inputs[images].detach().set_requires_grad(true);
        let loss = d.per_sample_loss(&x, labels.as_ref(), target, false);
        let want = &all[&format!("{call}.loss")];
        assert_eq!(loss.size(), want.size(), "{name} {call}: loss shape");
        let r = rel(&loss, want);
        assert!(r < 1e-5, "{name} {call}: loss differs by {r:e} relative");
        loss.sum(Kind::Double).backward();
        let r = rel(&x.grad(), &all[&format!("{call}.input_grad")]);
        assert!(
            r < 1e-5,
            "{name} {call}: image gradient differs by {r:e} relative"
        );
    }
    // The power iterations left the same u and v.
    let vars = d.heads().variables();
    let after = group("after.");
    assert!(!after.is_empty());
    for (pip, want) in &after {
        let r = rel(&vars[&ours(pip)], want);
        assert!(r < 1e-5, "{name}: {pip} after the calls differs by {r:e}");
    }
}

#[test]
fn every_case_matches_vision_aided_loss() {
    let cases = common::load_json("vision_aided", "cases.json");
    let cases = cases.as_object().unwrap();
    assert_eq!(cases.len(), 10);
    let mut types_seen = std::collections::BTreeSet::new();
    for (name, case) in cases {
        for t in case["loss_type"].as_str().unwrap().split('+') {
            types_seen.insert(t.to_string());
        }
        check_case(name, case);
    }
    // Every loss type of the package is covered.
    assert_eq!(types_seen.len(), LossType::ALL.len(), "{types_seen:?}");
}
