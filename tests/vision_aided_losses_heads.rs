//! The vision-aided loss types (reference §3) on hand-computed inputs, and the heads' shapes
//! and gradients for the documented feature shapes (§2.1, §2.2, StyleGAN2 variant).
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use vagan::backbones::bank::Backbone;
use vagan::vision_aided::heads::{Head, HeadConfig, HeadVariant, MlpD, MultiLevelDViT, SimpleD};
use vagan::vision_aided::losses::{
    bce_with_logits, ensemble_loss, parse_loss_types, LossType, Target,
};

const LN2: f64 = std::f64::consts::LN_2;

fn t(v: &[f64], shape: &[i64]) -> Tensor {
    Tensor::from_slice(v).reshape(shape)
}

fn vals(x: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(x.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + b.abs())
}

fn assert_all_close(x: &Tensor, want: &[f64]) {
    let got = vals(x);
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(close(*g, *w), "got {got:?}, want {want:?}");
    }
}

/// BCE(l, t) on scalars, the textbook formula.
fn bce(l: f64, t: f64) -> f64 {
    let s = 1.0 / (1.0 + (-l).exp());
    -(t * s.ln() + (1.0 - t) * (1.0 - s).ln())
}

#[test]
fn bce_matches_the_formula_and_is_stable() {
    let l = t(&[0.0, 2.0, -3.0, 0.5], &[4]);
    for target in [0.0, 0.8, 1.0] {
        let want: Vec<f64> = [0.0, 2.0, -3.0, 0.5]
            .iter()
            .map(|&x| bce(x, target))
            .collect();
        assert_all_close(&bce_with_logits(&l, target), &want);
    }
    // Saturated logits stay finite and exact: BCE(100, 0) = 100, BCE(-100, 0) = ln(1 + e^-100),
    // and in f32 BCE(100, 1) ≈ 0, BCE(-100, 1) = 100 (the textbook log-sigmoid form gives inf).
    let big = t(&[100.0, -100.0], &[2]);
    assert_all_close(
        &bce_with_logits(&big, 0.0),
        &[100.0, (-100f64).exp().ln_1p()],
    );
    let y = bce_with_logits(&big.to_kind(Kind::Float), 1.0);
    let v = vals(&y);
    assert!(v[0].abs() < 1e-6 && (v[1] - 100.0).abs() < 1e-4, "{v:?}");
}

#[test]
fn sigmoid_per_sample_values() {
    let l = t(&[0.0, 2.0, -1.0], &[3, 1]);
    let real = LossType::Sigmoid.loss(&[l.shallow_clone()], Target::Real);
    assert_eq!(real.size(), [3, 1]);
    assert_all_close(&real, &[LN2, bce(2.0, 1.0), bce(-1.0, 1.0)]);
    let fake = LossType::Sigmoid.loss(&[l.shallow_clone()], Target::Fake);
    assert_eq!(fake.size(), [3, 1]);
    // BCE(2, 0) = softplus(2) = 2 + ln(1 + e^-2).
    assert_all_close(&fake, &[LN2, 2.0 + (-2f64).exp().ln_1p(), bce(-1.0, 0.0)]);
    let gen = LossType::Sigmoid.loss(&[l], Target::Generator);
    assert_all_close(&gen, &vals(&real));
}

#[test]
fn sigmoid_s_smooths_real_and_generator_to_0_8() {
    let l = t(&[0.0, 2.0], &[2, 1]);
    let real = LossType::SigmoidS.loss(&[l.shallow_clone()], Target::Real);
    assert_all_close(&real, &[LN2, bce(2.0, 0.8)]);
    let gen = LossType::SigmoidS.loss(&[l.shallow_clone()], Target::Generator);
    assert_all_close(&gen, &vals(&real));
    // The fake side is not smoothed.
    let fake = LossType::SigmoidS.loss(&[l], Target::Fake);
    assert_all_close(&fake, &[LN2, bce(2.0, 0.0)]);

    // The generator's optimum is logit ln 4 = ln(0.8/0.2): zero gradient there, value
    // 0.2·ln 4 + ln 1.25, and higher on either side.
    let ln4 = 4f64.ln();
    let x = t(&[ln4], &[1, 1]).set_requires_grad(true);
    let g = LossType::SigmoidS.loss(&[x.shallow_clone()], Target::Generator);
    assert_all_close(&g, &[0.2 * ln4 + 1.25f64.ln()]);
    g.sum(Kind::Double).backward();
    assert!(vals(&x.grad())[0].abs() < 1e-12);
    for d in [-0.1, 0.1] {
        let other = LossType::SigmoidS.loss(&[t(&[ln4 + d], &[1, 1])], Target::Generator);
        assert!(vals(&other)[0] > vals(&g)[0]);
    }
}

#[test]
fn multilevel_sigmoid_averages_maps_then_sums_levels() {
    // Two samples; level 0 a [2,3,3] map, level 1 another, level 2 a [2,1] logit.
    let m0: Vec<f64> = (0..18).map(|i| (i as f64 - 9.0) / 3.0).collect();
    let m1: Vec<f64> = (0..18).map(|i| if i < 9 { 0.0 } else { 2.0 }).collect();
    let last = [1.0, -0.5];
    let levels = vec![t(&m0, &[2, 3, 3]), t(&m1, &[2, 3, 3]), t(&last, &[2, 1])];
    for (ty, alpha) in [
        (LossType::MultilevelSigmoid, 1.0),
        (LossType::MultilevelSigmoidS, 0.8),
    ] {
        for (target, tv) in [
            (Target::Real, alpha),
            (Target::Generator, alpha),
            (Target::Fake, 0.0),
        ] {
            let want: Vec<f64> = (0..2)
                .map(|b| {
                    let mean = |m: &[f64]| {
                        m[b * 9..b * 9 + 9].iter().map(|&x| bce(x, tv)).sum::<f64>() / 9.0
                    };
                    mean(&m0) + mean(&m1) + bce(last[b], tv)
                })
                .collect();
            let got = ty.loss(&levels, target);
            assert_eq!(got.size(), [2, 1], "{ty} {target:?}");
            assert_all_close(&got, &want);
        }
    }
    // All-zero logits: each of the three levels contributes ln 2, summed (not averaged).
    let zeros = vec![
        Tensor::zeros([2, 3, 3], (Kind::Double, Device::Cpu)),
        Tensor::zeros([2, 3, 3], (Kind::Double, Device::Cpu)),
        Tensor::zeros([2, 1], (Kind::Double, Device::Cpu)),
    ];
    let z = LossType::MultilevelSigmoid.loss(&zeros, Target::Real);
    assert_all_close(&z, &[3.0 * LN2, 3.0 * LN2]);
}

#[test]
fn hinge_values_are_scalars() {
    let l = t(&[-2.0, 0.5, 3.0], &[3, 1]);
    let real = LossType::Hinge.loss(&[l.shallow_clone()], Target::Real);
    assert_eq!(real.size(), Vec::<i64>::new());
    assert_all_close(&real, &[(3.0 + 0.5 + 0.0) / 3.0]);
    let fake = LossType::Hinge.loss(&[l.shallow_clone()], Target::Fake);
    assert_all_close(&fake, &[(0.0 + 1.5 + 4.0) / 3.0]);
    let gen = LossType::Hinge.loss(&[l], Target::Generator);
    assert_all_close(&gen, &[-0.5]);
}

#[test]
fn multilevel_hinge_sums_level_means() {
    let m: Vec<f64> = (0..18).map(|i| i as f64 / 4.0 - 2.0).collect();
    let levels = vec![t(&m, &[2, 3, 3]), t(&[0.5, -3.0], &[2, 1])];
    let mean =
        |f: &dyn Fn(f64) -> f64, v: &[f64]| v.iter().map(|&x| f(x)).sum::<f64>() / v.len() as f64;
    let real = LossType::MultilevelHinge.loss(&levels, Target::Real);
    assert_eq!(real.size(), Vec::<i64>::new());
    let r = |x: f64| (1.0 - x).max(0.0);
    assert_all_close(&real, &[mean(&r, &m) + mean(&r, &[0.5, -3.0])]);
    let f = |x: f64| (1.0 + x).max(0.0);
    let fake = LossType::MultilevelHinge.loss(&levels, Target::Fake);
    assert_all_close(&fake, &[mean(&f, &m) + mean(&f, &[0.5, -3.0])]);
    let gen = LossType::MultilevelHinge.loss(&levels, Target::Generator);
    let id = |x: f64| x;
    assert_all_close(&gen, &[-mean(&id, &m) - mean(&id, &[0.5, -3.0])]);
}

#[test]
fn parsing_names_and_lists() {
    for ty in LossType::ALL {
        assert_eq!(ty.name().parse::<LossType>().unwrap(), ty);
        assert_eq!(ty.to_string(), ty.name());
    }
    assert_eq!(
        parse_loss_types("multilevel_sigmoid_s+sigmoid+hinge").unwrap(),
        vec![
            LossType::MultilevelSigmoidS,
            LossType::Sigmoid,
            LossType::Hinge
        ]
    );
    // The reference's typos are not accepted, and the error names the culprit.
    for bad in ["sigmod", "multilevl_sigmoid_s", "multilevel", "Sigmoid"] {
        let e = bad.parse::<LossType>().unwrap_err().to_string();
        assert!(e.contains(&format!("'{bad}'")), "{e}");
        assert!(
            e.contains("multilevel_sigmoid_s"),
            "lists the known names: {e}"
        );
    }
    let e = parse_loss_types("sigmoid+sigmod").unwrap_err().to_string();
    assert!(e.contains("'sigmod'"), "{e}");
    assert!(parse_loss_types("").is_err());
    assert!(parse_loss_types("sigmoid+").is_err());
}

#[test]
fn ensemble_sums_over_networks() {
    let a = vec![t(&[0.0, 2.0], &[2, 1])];
    let b = vec![t(&[-2.0, 0.5, 3.0], &[3, 1]).narrow(0, 0, 2)];
    let types = parse_loss_types("sigmoid+hinge").unwrap();
    let got = ensemble_loss(&types, &[a, b], Target::Real).unwrap();
    assert_eq!(got.size(), [2, 1]);
    let h = (3.0 + 0.5) / 2.0;
    assert_all_close(&got, &[LN2 + h, bce(2.0, 1.0) + h]);
    assert!(ensemble_loss(&types, &[vec![t(&[0.0], &[1, 1])]], Target::Real).is_err());
    // A single-level loss on a multi-level head's output is refused.
    let ml = vec![t(&[0.0; 9], &[1, 3, 3]), t(&[0.0], &[1, 1])];
    assert!(ensemble_loss(&[LossType::Sigmoid], &[ml], Target::Real).is_err());
}

fn input(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu)).set_requires_grad(true)
}

fn assert_grad(x: &Tensor) {
    let g = x.grad();
    assert!(g.defined(), "no gradient reached the input");
    assert_eq!(g.size(), x.size());
    let s = g.abs().sum(Kind::Double).double_value(&[]);
    assert!(s.is_finite() && s > 0.0, "gradient sum {s}");
}

const VARIANTS: [HeadVariant; 2] = [HeadVariant::StyleGan2, HeadVariant::SpectralNorm];

fn cfg(variant: HeadVariant) -> HeadConfig {
    HeadConfig {
        variant,
        num_classes: 0,
    }
}

#[test]
fn multilevel_head_clip_shapes_and_gradients() {
    for variant in VARIANTS {
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let head = MultiLevelDViT::new(vs.root() / "clip", &cfg(variant), 3, 768, 512, 256, 1);
        let maps = [input(&[2, 768, 7, 7]), input(&[2, 768, 7, 7])];
        let pooled = input(&[2, 512]);
        let out = head.forward(&maps, &pooled, None);
        let shapes: Vec<Vec<i64>> = out.iter().map(|o| o.size()).collect();
        assert_eq!(shapes, vec![vec![2, 3, 3], vec![2, 3, 3], vec![2, 1]]);
        LossType::MultilevelSigmoid
            .loss(&out, Target::Real)
            .mean(Kind::Float)
            .backward();
        for x in maps.iter().chain([&pooled]) {
            assert_grad(x);
        }
        // Every parameter (2 levels × 2 convs + 2 FCs, weight and bias each) is trained; the
        // spectral-norm vectors u and v are not parameters.
        let vars = vs.trainable_variables();
        assert_eq!(vars.len(), 12, "{variant}");
        for v in &vars {
            assert!(v.grad().defined());
        }
        assert_eq!(
            vs.variables().len(),
            if variant == HeadVariant::SpectralNorm {
                24
            } else {
                12
            }
        );
    }
}

#[test]
fn multilevel_head_dino_shapes_and_gradients() {
    for variant in VARIANTS {
        tch::manual_seed(1);
        let vs = VarStore::new(Device::Cpu);
        let head = MultiLevelDViT::new(vs.root() / "dino", &cfg(variant), 3, 768, 768, 128, 2);
        let maps = [input(&[2, 768, 14, 14]), input(&[2, 768, 14, 14])];
        let pooled = input(&[2, 768]);
        let out = head.forward(&maps, &pooled, None);
        let shapes: Vec<Vec<i64>> = out.iter().map(|o| o.size()).collect();
        assert_eq!(
            shapes,
            vec![vec![2, 3, 3], vec![2, 3, 3], vec![2, 1]],
            "{variant}"
        );
        LossType::MultilevelHinge
            .loss(&out, Target::Fake)
            .backward();
        for x in maps.iter().chain([&pooled]) {
            assert_grad(x);
        }
    }
}

#[test]
fn simple_d_shapes_and_gradients() {
    for variant in VARIANTS {
        tch::manual_seed(2);
        let vs = VarStore::new(Device::Cpu);
        // Swin-T (768×7×7), VGG-16 (512×7×7): out_size 3; an 8×8 map (seg/det/face heads): 4.
        for (name, c, s, out_size) in [("swin", 768, 7, 3), ("vgg", 512, 7, 3), ("det", 768, 8, 4)]
        {
            assert_eq!(SimpleD::out_size_for(s), out_size);
            let head = SimpleD::new(vs.root() / name, &cfg(variant), c, 256, out_size);
            let x = input(&[3, c, s, s]);
            let y = head.forward(&x, None);
            assert_eq!(y.size(), [3, 1], "{name} {variant}");
            LossType::Sigmoid
                .loss(&[y], Target::Generator)
                .mean(Kind::Float)
                .backward();
            assert_grad(&x);
        }
    }
}

#[test]
#[should_panic(expected = "out_size")]
fn simple_d_rejects_a_wrong_map_size() {
    let vs = VarStore::new(Device::Cpu);
    let head = SimpleD::new(vs.root(), &HeadConfig::default(), 16, 8, 3);
    let _ = head.forward(
        &Tensor::zeros([1, 16, 8, 8], (Kind::Float, Device::Cpu)),
        None,
    );
}

#[test]
fn mlp_d_shapes_and_gradients() {
    for variant in VARIANTS {
        tch::manual_seed(3);
        let vs = VarStore::new(Device::Cpu);
        for (name, c) in [("clip", 512), ("dino", 768)] {
            let head = MlpD::new(vs.root() / name, &cfg(variant), c, 256);
            let x = input(&[4, c]);
            let y = head.forward(&x, None);
            assert_eq!(y.size(), [4, 1]);
            LossType::SigmoidS
                .loss(&[y], Target::Real)
                .mean(Kind::Float)
                .backward();
            assert_grad(&x);
        }
    }
}

#[test]
fn class_projection_adds_the_label_embedding_term() {
    for variant in VARIANTS {
        tch::manual_seed(5);
        let vs = VarStore::new(Device::Cpu);
        let conditional = HeadConfig {
            variant,
            num_classes: 3,
        };
        let head = MlpD::new(vs.root(), &conditional, 6, 4);
        let x = input(&[2, 6]);
        let labels = Tensor::from_slice(&[2i64, 0]);
        let y = head.forward(&x, Some(&labels));
        // Zeroing the embedding removes exactly the projection term.
        let with = vals(&y);
        let _ = tch::no_grad(|| vs.variables()["embed"].shallow_clone().zero_());
        let without = vals(&head.forward(&x, Some(&labels)));
        assert!(
            with.iter().zip(&without).all(|(a, b)| (a - b).abs() > 1e-6),
            "{variant}"
        );
    }
}

/// Parameter count of a head built with the reference's dimensions (weights and biases).
fn reference_params(member: &str, multi_level: bool) -> i64 {
    let conv = |i: i64, o: i64, k: i64| i * o * k * k + o;
    let fc = |i: i64, o: i64| i * o + o;
    match (member, multi_level) {
        ("clip_vit_b32", true) => {
            2 * (conv(768, 256, 3) + conv(256, 1, 1)) + fc(512, 256) + fc(256, 1)
        }
        ("dino_vitb16", true) => {
            2 * (conv(768, 128, 3) + conv(128, 1, 1)) + fc(768, 128) + fc(128, 1)
        }
        ("clip_vit_b32", false) => fc(512, 256) + fc(256, 1),
        ("dino_vitb16", false) => fc(768, 256) + fc(256, 1),
        ("swin_t", _) => conv(768, 256, 3) + fc(256 * 9, 256) + fc(256, 1),
        ("vgg16" | "vgg16_antialiased", _) => conv(512, 256, 3) + fc(256 * 9, 256) + fc(256, 1),
        // EfficientNet-Lite: SimpleD on the final 1280-channel map, 7×7 at Lite0's 224 pixels
        // (3×3 after the conv), 8×8 and 9×9 at Lite1's 240 and Lite2's 260 (4×4).
        ("efficientnet_lite0", _) => conv(1280, 256, 3) + fc(256 * 9, 256) + fc(256, 1),
        (_, _) => conv(1280, 256, 3) + fc(256 * 16, 256) + fc(256, 1),
    }
}

/// Every bank member (full-size random backbones) gets the reference's head: its parameter
/// count, output shapes, and gradients flowing back to the images.
#[test]
fn heads_for_bank_members_have_the_reference_dimensions() {
    tch::manual_seed(4);
    for member in vagan::backbones::bank::MEMBERS {
        let backbone = Backbone::random(member, Device::Cpu).unwrap();
        let images = input(&[2, 3, 32, 32]);
        let f = backbone.forward(&images);
        for ml in [true, false] {
            let vs = VarStore::new(Device::Cpu);
            let head =
                Head::for_backbone(vs.root(), &backbone, &HeadConfig::default(), ml).unwrap();
            let params: i64 = vs
                .trainable_variables()
                .iter()
                .map(|t| t.numel() as i64)
                .sum();
            assert_eq!(
                params,
                reference_params(member, ml),
                "{member} multi_level={ml}"
            );
            let out = head.forward(&f, None);
            let shapes: Vec<Vec<i64>> = out.iter().map(|o| o.size()).collect();
            let vit = member.starts_with("clip") || member.starts_with("dino");
            let want = if vit && ml {
                vec![vec![2, 3, 3], vec![2, 3, 3], vec![2, 1]]
            } else {
                vec![vec![2, 1]]
            };
            assert_eq!(shapes, want, "{member} multi_level={ml}");
        }
    }
    // The gradient reaches the images through a backbone and its head.
    let backbone = Backbone::random("swin_t", Device::Cpu).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let head = Head::for_backbone(vs.root(), &backbone, &HeadConfig::default(), false).unwrap();
    let images = input(&[2, 3, 32, 32]);
    let out = head.forward(&backbone.forward(&images), None);
    LossType::Sigmoid
        .loss(&out, Target::Generator)
        .mean(Kind::Float)
        .backward();
    assert_grad(&images);
}
