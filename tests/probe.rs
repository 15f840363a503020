//! The linear probe: the logistic regression against scikit-learn's `LogisticRegression(C=0.2,
//! max_iter=5000)` (fixtures by `scripts/fixtures/logistic.py`), and the probe end to end on a
//! tiny backbone and generator.
mod common;
use tch::{Device, Kind, Tensor};
use vagan::probe::{self, logistic, ProbeOptions};

#[test]
fn logistic_regression_matches_scikit_learn() {
    for case in ["shifted", "relu_pooled", "separable"] {
        let f = common::load_fixture("probe", &format!("{case}.safetensors"));
        let model = logistic::fit(&f["train_x"], &f["train_y"], 0.2).unwrap();
        // The reference's call stops at lbfgs's tolerance; the tight-tolerance fit is the optimum.
        let coef = &f["exact_coef"];
        let scale = coef.abs().max().double_value(&[]);
        let diff = (&model.weights - coef).abs().max().double_value(&[]);
        assert!(
            diff <= 1e-3 * scale,
            "{case}: coefficients differ by {diff} (scale {scale})"
        );
        let b = f["exact_intercept"].double_value(&[0]);
        assert!(
            (model.intercept - b).abs() <= 1e-3 * scale.max(b.abs()),
            "{case}: intercept {} vs {b}",
            model.intercept
        );
        let acc = model.accuracy(&f["val_x"], &f["val_y"]);
        assert_eq!(
            acc,
            f["val_accuracy"].double_value(&[0]),
            "{case}: validation accuracy"
        );
        assert!(
            model.iterations < 30,
            "{case}: {} Newton iterations",
            model.iterations
        );
    }
}

/// At the optimum the gradient of ½‖w‖² + C·Σ logloss vanishes: a check independent of
/// scikit-learn's own tolerance.
#[test]
fn the_fit_is_the_optimum() {
    let f = common::load_fixture("probe", "relu_pooled.safetensors");
    let (x, y) = (&f["train_x"], &f["train_y"]);
    let model = logistic::fit(x, y, 0.2).unwrap();
    let z = x.mv(&model.weights) + model.intercept;
    let residual = z.sigmoid() - y; // d logloss / dz
    let grad_w = &model.weights + x.transpose(0, 1).mv(&residual) * 0.2;
    let grad_b = residual.sum(Kind::Double).double_value(&[]) * 0.2;
    let worst = grad_w.abs().max().double_value(&[]).max(grad_b.abs());
    assert!(worst < 1e-7, "gradient at the fit {worst}");
}

#[test]
fn splits_and_accuracy_on_separable_and_identical_sets() {
    let opts = ProbeOptions::default();
    let a = Tensor::randn([200, 6], (Kind::Float, Device::Cpu));
    // Identical distributions: about chance.
    let b = Tensor::randn([200, 6], (Kind::Float, Device::Cpu));
    let acc = probe::split_accuracies(&a, &b, &opts).unwrap();
    assert_eq!(acc.len(), 3);
    assert!(acc.iter().all(|&x| (0.3..0.7).contains(&x)), "{acc:?}");
    // Far apart: perfect, every time.
    let acc = probe::split_accuracies(&(&a + 10.0), &b, &opts).unwrap();
    assert!(acc.iter().all(|&x| x == 1.0), "{acc:?}");
    // Fresh splits: different accuracies on overlapping sets, the same for the same seed.
    let c = &b + 0.3;
    let one = probe::split_accuracies(&c, &b, &opts).unwrap();
    assert_eq!(one, probe::split_accuracies(&c, &b, &opts).unwrap());
    assert!(one.windows(2).any(|w| w[0] != w[1]), "{one:?}");
}

#[test]
fn probe_runs_a_backbone_on_reals_and_fakes() {
    let _serial = common::serial();
    tch::manual_seed(0);
    let tmp = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(tmp.path(), 24, 8);
    let dataset = vagan::data::Dataset::open(&data).unwrap();
    let opts = common::tiny_options(data);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let g = vagan::nets::Generator::new(vs.root(), &opts.generator_config(8, 1));
    let backbone =
        vagan::backbones::bank::Backbone::tiny("efficientnet_lite0", Device::Cpu).unwrap();
    let popts = ProbeOptions {
        num_images: 20,
        batch: 8,
        ..Default::default()
    };
    let r = probe::probe(&backbone, &dataset, &g, &popts).unwrap();
    assert_eq!(
        (r.network.as_str(), r.num_real, r.num_fake),
        ("efficientnet_lite0", 20, 20)
    );
    assert_eq!(r.accuracies.len(), 3);
    assert!(r.accuracies.iter().all(|a| (0.0..=1.0).contains(a)));
    // The same seed gives the same fakes and splits.
    let again = probe::probe(&backbone, &dataset, &g, &popts).unwrap();
    assert_eq!(again.accuracies, r.accuracies);
    let ranked = probe::rank(vec![
        vagan::probe::ProbeResult {
            mean_accuracy: 0.6,
            network: "a".into(),
            ..r.clone()
        },
        vagan::probe::ProbeResult {
            mean_accuracy: 0.9,
            network: "b".into(),
            ..r.clone()
        },
    ]);
    assert_eq!(ranked[0].network, "b");
}
