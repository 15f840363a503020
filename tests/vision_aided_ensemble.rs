//! The `vagan::vision_aided::Discriminator` API on tiny random backbones: building from bank
//! and loss specs, which gradients flow in the discriminator and generator steps, ADA tuning,
//! and the state a snapshot keeps.
use tch::{Device, Kind, Tensor};
use vagan::vision_aided::{Augment, Discriminator, HeadVariant, Target};

fn images() -> Tensor {
    Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0
}

fn tiny(bank: &str, loss: &str) -> anyhow::Result<Discriminator> {
    Discriminator::builder(bank, loss).build_tiny_random()
}

#[test]
fn builder_names_what_is_wrong() {
    let err = |bank: &str, loss: &str| format!("{:#}", tiny(bank, loss).err().unwrap());
    assert!(err("clip_vit_b32+vgg16", "sigmoid").contains("2 networks"));
    assert!(err("resnet50", "sigmoid").contains("unknown backbone 'resnet50'"));
    assert!(err("vgg16", "softmax").contains("unknown vision-aided loss type 'softmax'"));
    assert!(err("vgg16+vgg16", "sigmoid+sigmoid").contains("already in the ensemble"));
    assert!("ada:xyz".parse::<Augment>().is_err());
    assert!("blur".parse::<Augment>().is_err());
    assert_eq!("none".parse::<Augment>().unwrap(), Augment::None);
    assert_eq!("ada".parse::<Augment>().unwrap(), Augment::ada(0.3));
    assert_eq!(
        "diffaug:color".parse::<Augment>().unwrap(),
        Augment::DiffAugment {
            policy: "color".into()
        }
    );
}

#[test]
fn every_member_gets_a_head_and_the_losses_sum() {
    tch::manual_seed(0);
    let bank = vagan::backbones::bank::MEMBERS.join("+");
    let losses = [
        "multilevel_sigmoid_s",
        "hinge",
        "sigmoid",
        "sigmoid_s",
        "hinge",
        "sigmoid",
        "multilevel_hinge",
        "sigmoid_s",
    ];
    let mut d = Discriminator::builder(&bank, &losses.join("+"))
        .augment(Augment::None)
        .head_variant(HeadVariant::SpectralNorm)
        .build_tiny_random()
        .unwrap();
    assert_eq!(d.names(), vagan::backbones::bank::MEMBERS);
    let x = images();
    let loss = d.loss(&x, Target::Fake).unwrap();
    assert_eq!(loss.size(), Vec::<i64>::new());
    assert!(loss.double_value(&[]).is_finite());
    // Every head's parameters get a gradient from the summed loss.
    loss.backward();
    for name in d.names() {
        let has_grad = d
            .heads()
            .variables()
            .iter()
            .filter(|(n, t)| n.starts_with(&format!("{name}.")) && t.requires_grad())
            .all(|(_, t)| t.grad().defined());
        assert!(has_grad, "{name}");
    }
}

#[test]
fn discriminator_step_trains_heads_only_and_generator_step_reaches_the_images() {
    tch::manual_seed(1);
    let mut d = tiny(
        "clip_vit_b32+efficientnet_lite0",
        "multilevel_sigmoid+sigmoid",
    )
    .unwrap();
    for target in [Target::Real, Target::Fake] {
        let x = images().set_requires_grad(true);
        d.loss(&x, target).unwrap().backward();
        assert!(
            !x.grad().defined(),
            "{target:?}: the backbone must run without gradients"
        );
    }
    let x = images().set_requires_grad(true);
    d.loss(&x, Target::Generator).unwrap().backward();
    let g = x.grad().abs().sum(Kind::Double).double_value(&[]);
    assert!(g.is_finite() && g > 0.0, "generator step gradient {g}");
}

#[test]
fn conditional_heads_need_labels() {
    let mut d = Discriminator::builder("vgg16", "sigmoid")
        .num_classes(4)
        .build_tiny_random()
        .unwrap();
    let x = images();
    assert!(d.loss(&x, Target::Real).is_err());
    let labels = Tensor::from_slice(&[3i64, 1]);
    assert!(d.conditional_loss(&x, Some(&labels), Target::Real).is_ok());
    let mut u = tiny("vgg16", "sigmoid").unwrap();
    assert!(u.conditional_loss(&x, Some(&labels), Target::Real).is_err());
}

/// Sets every output bias of the heads to `v`, making the last-level logits' signs that of `v`.
fn set_out_bias(d: &Discriminator, v: f64) {
    for (n, mut t) in d.heads().variables() {
        if n.ends_with(".out.bias") {
            let _ = tch::no_grad(|| t.fill_(v));
        }
    }
}

#[test]
fn ada_moves_each_p_toward_its_target() {
    tch::manual_seed(2);
    let mut d = Discriminator::builder("vgg16+efficientnet_lite0", "sigmoid+sigmoid")
        .augment(Augment::ada(0.3))
        .build_tiny_random()
        .unwrap();
    let x = images();
    // Real logits all positive: r = 1 > 0.3, p rises by images / 500k per adjustment.
    set_out_bias(&d, 100.0);
    for _ in 0..2 {
        let _ = d.loss(&x, Target::Real).unwrap();
        d.adjust_ada(10_000);
    }
    for s in d.state() {
        assert!((s.ada_p - 0.04).abs() < 1e-12, "{s:?}");
        assert_eq!(s.ada_sign_count, 0);
    }
    // Fakes do not count; without statistics p stays.
    let _ = d.loss(&x, Target::Fake).unwrap();
    d.adjust_ada(10_000);
    assert!(d.state().iter().all(|s| (s.ada_p - 0.04).abs() < 1e-12));
    // Real logits all negative: p falls, and stops at 0.
    set_out_bias(&d, -100.0);
    for _ in 0..3 {
        let _ = d.loss(&x, Target::Real).unwrap();
        d.adjust_ada(10_000);
    }
    assert!(d.state().iter().all(|s| s.ada_p == 0.0));
    // The state a snapshot keeps comes back, and names the networks it is for.
    let _ = d.loss(&x, Target::Real).unwrap();
    let saved = d.state();
    assert_eq!(saved[0].ada_sign_count, 2);
    let mut e = Discriminator::builder("vgg16+efficientnet_lite0", "sigmoid+sigmoid")
        .augment(Augment::ada(0.3))
        .build_tiny_random()
        .unwrap();
    e.restore_state(&saved).unwrap();
    assert_eq!(e.state(), saved);
    let mut other = tiny("vgg16", "sigmoid_s").unwrap();
    assert!(other.restore_state(&saved[..1]).is_err());
    // Without ADA, adjusting does nothing.
    let mut plain = tiny("vgg16", "sigmoid").unwrap();
    let _ = plain.loss(&x, Target::Real).unwrap();
    plain.adjust_ada(10_000);
    assert_eq!(plain.state()[0].ada_p, 0.0);
}
