//! R1 = ‖∇ₓD(x)‖², computed with double backward, against finite differences (in f64).
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use vagan::augment::Policy;
use vagan::nets::{Discriminator, DiscriminatorConfig};

fn tiny_d() -> (VarStore, Discriminator) {
    tch::manual_seed(11);
    let mut vs = VarStore::new(Device::Cpu);
    let cfg = DiscriminatorConfig {
        resolution: 8,
        img_channels: 1,
        channel_base: 32,
        channel_max: 4,
        mbstd_group: 2,
    };
    let d = Discriminator::new(vs.root(), &cfg);
    vs.double();
    (vs, d)
}

#[test]
fn r1_gradient_matches_finite_differences() {
    let (_vs, d) = tiny_d();
    let none = Policy::default();
    let x = Tensor::randn([2, 1, 8, 8], (Kind::Double, Device::Cpu));
    let penalty = vagan::train::r1_penalty(&d, &none, &x);
    // ∇ₓ Σ D(x) from autograd, against central differences along random directions.
    let xg = x.detach().set_requires_grad(true);
    let grad =
        Tensor::run_backward(&[d.forward(&xg).sum(Kind::Double)], &[&xg], false, false).remove(0);
    let eps = 1e-6;
    for k in 0..4 {
        tch::manual_seed(100 + k);
        let v = Tensor::randn([2, 1, 8, 8], (Kind::Double, Device::Cpu));
        let f = |t: &Tensor| tch::no_grad(|| d.forward(t).sum(Kind::Double).double_value(&[]));
        let fd = (f(&(&x + &v * eps)) - f(&(&x - &v * eps))) / (2.0 * eps);
        let an = (&grad * &v).sum(Kind::Double).double_value(&[]);
        assert!(
            (fd - an).abs() <= 1e-6 * an.abs().max(1.0),
            "directional derivative {an} vs finite difference {fd}"
        );
    }
    // The penalty is per sample: ‖∇‖² of each image (D's samples interact only through mbstd,
    // whose group of 2 couples them, so compare the total).
    let total = grad.square().sum(Kind::Double).double_value(&[]);
    let p = penalty.sum(Kind::Double).double_value(&[]);
    assert!(
        (total - p).abs() <= 1e-9 * total.max(1.0),
        "penalty {p} vs ‖∇‖² {total}"
    );
}

#[test]
fn r1_double_backward_matches_finite_differences_in_the_weights() {
    let (vs, d) = tiny_d();
    let none = Policy::default();
    let x = Tensor::randn([2, 1, 8, 8], (Kind::Double, Device::Cpu));
    let weight = vs.variables()["b8.conv0.weight"].shallow_clone();
    let penalty = vagan::train::r1_penalty(&d, &none, &x).sum(Kind::Double);
    let grad = Tensor::run_backward(&[penalty], &[&weight], false, false).remove(0);
    assert!(grad.abs().sum(Kind::Double).double_value(&[]) > 0.0);
    let eps = 1e-6;
    let v = Tensor::randn(weight.size(), (Kind::Double, Device::Cpu));
    let at = |s: f64| {
        let mut w = weight.shallow_clone();
        let saved = weight.detach().copy();
        tch::no_grad(|| {
            let _ = w.g_add_(&(&v * s));
        });
        let p = vagan::train::r1_penalty(&d, &none, &x)
            .sum(Kind::Double)
            .double_value(&[]);
        tch::no_grad(|| w.copy_(&saved));
        p
    };
    let fd = (at(eps) - at(-eps)) / (2.0 * eps);
    let an = (&grad * &v).sum(Kind::Double).double_value(&[]);
    assert!(
        (fd - an).abs() <= 1e-5 * an.abs().max(1e-3),
        "second-order gradient {an} vs finite difference {fd}"
    );
}
