//! N steps, a snapshot, then N more steps from it must give exactly the weights, optimiser
//! moments and counters of 2N steps in one go (CPU, deterministic kernels).
mod common;
use vagan::train::snapshot::Snapshot;
use vagan::train::Trainer;

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(tmp.path(), 24, 8);
    let dev = tch::Device::Cpu;

    // 20 steps of batch 4: R1 runs at steps 0 and 16, path length every 4 steps.
    let straight = common::tiny_options(data.clone());
    let mut a = Trainer::new(straight.clone(), &tmp.path().join("a"), dev, None).unwrap();
    let a_last = a.run(false).unwrap();

    let mut half = straight.clone();
    half.kimg = 0.04;
    let mut b = Trainer::new(half, &tmp.path().join("b"), dev, None).unwrap();
    let b_mid = b.run(false).unwrap();
    assert!(
        b_mid.ends_with("network-snapshot-000000.040.safetensors"),
        "{}",
        b_mid.display()
    );
    drop(b);
    let mut b = Trainer::new(straight, &tmp.path().join("b"), dev, Some(&b_mid)).unwrap();
    assert_eq!(b.state.batch_idx, 10);
    let b_last = b.run(false).unwrap();

    let (sa, sb) = (
        Snapshot::load(&a_last).unwrap(),
        Snapshot::load(&b_last).unwrap(),
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
    assert_eq!(ma.batch_idx, 20);
    // Training moved the weights: the comparison above is not between two untouched networks.
    let init = Trainer::new(common::tiny_options(data), &tmp.path().join("c"), dev, None).unwrap();
    init.save_snapshot().unwrap();
    let (tc, _) =
        vagan::weights::load(&vagan::train::snapshot::latest(&tmp.path().join("c")).unwrap())
            .unwrap();
    let moved = ta
        .iter()
        .zip(&tc)
        .filter(|((n, _), _)| n.starts_with("G."))
        .any(|((_, x), (_, y))| !x.equal(y));
    assert!(moved, "training did not change G");
}
