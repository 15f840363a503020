//! `vagan train` with a vision-aided ensemble: exact resume of the heads, their optimiser and
//! ADA state; networks added to a resumed run. Uses EfficientNet-Lite0 and Lite1 from the
//! weights cache (`vagan weights fetch efficientnet_lite0`, `... efficientnet_lite1`).
mod common;
use vagan::train::snapshot::Snapshot;
use vagan::train::{CvOptions, Trainer};
use vagan::vision_aided::{Augment, HeadVariant};

fn cv(bank: &str, loss: &str) -> CvOptions {
    CvOptions {
        bank: bank.into(),
        loss: loss.into(),
        head: HeadVariant::SpectralNorm,
        augment: Augment::ada(0.3),
        warmup_kimg: 0.004,
    }
}

/// Tiny networks, batch 2, 8 steps (the full-size backbone at 224 pixels dominates the time).
fn options(data: std::path::PathBuf) -> vagan::train::TrainOptions {
    vagan::train::TrainOptions {
        batch: 2,
        kimg: 0.016,
        tick_kimg: 0.008,
        ..common::tiny_options(data)
    }
}

/// The warm-up ends after 2 steps and ADA adjusts p at steps 4 and 8 (the halves are 4 steps):
/// heads, their optimiser, the ADA state and the switch-on all resume exactly.
#[test]
fn resumed_vision_aided_run_equals_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(tmp.path(), 24, 8);
    let mut opts = options(data);
    opts.cv = Some(cv("efficientnet_lite0", "sigmoid_s"));
    let last = common::assert_resume_is_exact(opts, tmp.path());
    let snap = Snapshot::load(&last).unwrap();
    assert_eq!(snap.meta.cv.len(), 1);
    assert!(snap.get("CV.efficientnet_lite0.out.weight_orig").is_some());
    assert!(snap
        .get("opt_CV.step.efficientnet_lite0.out.weight_orig")
        .is_some());
    // The log shows the switch-on after the warm-up and the ADA probability.
    let stats = std::fs::read_to_string(tmp.path().join("a/stats.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = stats
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines
        .iter()
        .all(|l| l["cv_ada_p.efficientnet_lite0"].is_f64()));
    assert!(lines.iter().all(|l| l["loss_D_cv"].is_f64()), "{stats}");
}

/// Appending a network to a resumed run: the old head and optimiser state come from the
/// snapshot, the new network gets the head a fresh run would have drawn for it and an empty
/// optimiser state; training goes on with both.
#[test]
fn a_network_added_on_resume_gets_a_fresh_head() {
    let _serial = common::serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(tmp.path(), 24, 8);
    let dev = tch::Device::Cpu;
    let mut one = options(data);
    one.kimg = 0.008;
    one.cv = Some(cv("efficientnet_lite0", "sigmoid_s"));
    let mid = Trainer::new(one.clone(), &tmp.path().join("a"), dev, None)
        .unwrap()
        .run(false)
        .unwrap();
    let mut two = one.clone();
    two.kimg = 0.016;
    two.cv = Some(cv(
        "efficientnet_lite0+efficientnet_lite1",
        "sigmoid_s+sigmoid",
    ));
    let mut resumed = Trainer::new(two.clone(), &tmp.path().join("a"), dev, Some(&mid)).unwrap();
    let after = resumed.save_snapshot().unwrap();
    let fresh = Trainer::new(two, &tmp.path().join("fresh"), dev, None).unwrap();
    let fresh = fresh.save_snapshot().unwrap();
    let (before, fresh) = (
        Snapshot::load(&mid).unwrap(),
        Snapshot::load(&fresh).unwrap(),
    );
    let (names, _) = vagan::weights::load(&after).unwrap();
    let mut checked = [0; 3];
    for (name, t) in &names {
        let optimiser = name.starts_with("opt_CV.");
        if name.starts_with("CV.efficientnet_lite0.")
            || optimiser && name.contains(".efficientnet_lite0.")
        {
            assert!(t.equal(&before.get(name).unwrap()), "{name} not restored");
            checked[0] += 1;
        } else if name.starts_with("CV.efficientnet_lite1.") {
            assert!(
                t.equal(&fresh.get(name).unwrap()),
                "{name} is not the fresh head"
            );
            checked[1] += 1;
        } else if optimiser && name.contains(".efficientnet_lite1.") {
            assert_eq!(
                t.abs().sum(tch::Kind::Double).double_value(&[]),
                0.0,
                "{name}"
            );
            checked[2] += 1;
        }
    }
    assert!(checked.iter().all(|&c| c > 0), "{checked:?}");
    let last = resumed.run(false).unwrap();
    let last = Snapshot::load(&last).unwrap();
    assert_eq!(last.meta.cv.len(), 2);
    assert_eq!(last.meta.state.batch_idx, 8);
}
