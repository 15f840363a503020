//! Layer shapes, equalised-learning-rate scaling, FIR resampling and modulated convolution.
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use vagan::nets::layers::{
    blur_filter, upfirdn2d, upsample2d, ConvConfig, EqualConv2d, EqualLinear, LinearConfig,
    ModulatedConv2d,
};
use vagan::nets::{Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, NoiseMode};

fn var(vs: &VarStore, name: &str) -> Tensor {
    vs.variables()
        .remove(name)
        .unwrap_or_else(|| panic!("no variable {name}: {:?}", vs.variables().keys()))
}

fn close(a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.size(), b.size());
    let d = (a - b).abs().max().double_value(&[]);
    let s = b.abs().max().double_value(&[]).max(1.0);
    assert!(d <= tol * s, "max abs diff {d} (scale {s})");
}

#[test]
fn equal_linear_scales_weights_at_run_time() {
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let cfg = LinearConfig {
        lr_mult: 0.01,
        bias_init: 1.0,
        ..LinearConfig::default()
    };
    let fc = EqualLinear::new(vs.root() / "fc", 256, 64, cfg);
    let w = var(&vs, "fc.weight");
    let b = var(&vs, "fc.bias");
    // Stored as N(0, 1/lr_mult²) and bias_init/lr_mult ...
    let std = f64::try_from(w.std(true)).unwrap();
    assert!((std - 100.0).abs() < 5.0, "stored weight std {std}");
    assert!(b.allclose(
        &Tensor::full([64], 100.0, (Kind::Float, Device::Cpu)),
        1e-6,
        1e-6,
        false
    ));
    // ... and used as w·lr_mult/√fan_in, b·lr_mult.
    let x = Tensor::randn([5, 256], (Kind::Float, Device::Cpu));
    let expected = x.matmul(&(&w * (0.01 / 16.0)).tr()) + &b * 0.01;
    close(&fc.forward(&x), &expected, 1e-5);
    // lrelu variant: slope 0.2 and gain √2.
    let vs = VarStore::new(Device::Cpu);
    let fc = EqualLinear::new(vs.root(), 4, 3, LinearConfig::lrelu());
    let x = Tensor::randn([7, 4], (Kind::Float, Device::Cpu));
    let lin = x.matmul(&(var(&vs, "weight") * 0.5).tr());
    let expected = lin.maximum(&(&lin * 0.2)) * std::f64::consts::SQRT_2;
    close(&fc.forward(&x), &expected, 1e-5);
}

#[test]
fn equal_conv_shapes_and_scaling() {
    tch::manual_seed(1);
    let vs = VarStore::new(Device::Cpu);
    let plain = EqualConv2d::new(
        vs.root() / "a",
        3,
        8,
        3,
        ConvConfig {
            activate: false,
            ..Default::default()
        },
    );
    let x = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
    let y = plain.forward(&x, 1.0);
    assert_eq!(y.size(), [2, 8, 16, 16]);
    let w = var(&vs, "a.weight") / (27f64).sqrt();
    close(
        &y,
        &x.conv2d(&w, Some(&var(&vs, "a.bias")), [1, 1], [1, 1], [1, 1], 1),
        1e-5,
    );
    let down3 = EqualConv2d::new(
        vs.root() / "b",
        3,
        8,
        3,
        ConvConfig {
            down: true,
            ..Default::default()
        },
    );
    assert_eq!(down3.forward(&x, 1.0).size(), [2, 8, 8, 8]);
    let down1 = EqualConv2d::new(
        vs.root() / "c",
        3,
        8,
        1,
        ConvConfig {
            down: true,
            bias: false,
            activate: false,
        },
    );
    assert_eq!(down1.forward(&x, 0.5).size(), [2, 8, 8, 8]);
    // Blur-and-subsample of a constant image keeps the constant away from the borders.
    let ones = Tensor::ones([1, 1, 16, 16], (Kind::Float, Device::Cpu));
    let d = upfirdn2d(&ones, &blur_filter(Device::Cpu), 1, 2, [1, 1, 1, 1], 1.0);
    assert_eq!(d.size(), [1, 1, 8, 8]);
    close(
        &d.narrow(2, 1, 6).narrow(3, 1, 6),
        &Tensor::ones([1, 1, 6, 6], (Kind::Float, Device::Cpu)),
        1e-6,
    );
}

#[test]
fn blurred_upsampling_preserves_constants_and_doubles_size() {
    let f = blur_filter(Device::Cpu);
    assert!((f.sum(Kind::Float).double_value(&[]) - 1.0).abs() < 1e-6);
    let x = Tensor::full([1, 3, 8, 8], 0.7, (Kind::Float, Device::Cpu));
    let y = upsample2d(&x, &f);
    assert_eq!(y.size(), [1, 3, 16, 16]);
    let inner = y.narrow(2, 2, 12).narrow(3, 2, 12);
    close(
        &inner,
        &Tensor::full([1, 3, 12, 12], 0.7, (Kind::Float, Device::Cpu)),
        1e-6,
    );
}

/// The reference definition of the modulated conv: per-sample weights W·s, demodulated by
/// 1/√(Σ(W·s)² + 1e-8), optionally applied after zero-insertion upsampling and the blur
/// (on the unbounded signal: the blur's padding also covers the conv's, no zeros in between).
fn reference_modconv(vs: &VarStore, x: &Tensor, w: &Tensor, up: bool) -> Tensor {
    let a = var(vs, "affine.weight");
    let ab = var(vs, "affine.bias");
    let weight = var(vs, "weight");
    let styles = w.matmul(&(&a / (a.size()[1] as f64).sqrt()).tr()) + ab;
    let n = x.size()[0];
    let outs: Vec<Tensor> = (0..n)
        .map(|i| {
            let wi = &weight * styles.get(i).reshape([1, -1, 1, 1]);
            let d = (wi
                .square()
                .sum_dim_intlist(&[1i64, 2, 3][..], true, Kind::Float)
                + 1e-8)
                .rsqrt();
            let wi = wi * d;
            let xi = x.get(i).unsqueeze(0);
            if up {
                let u = upfirdn2d(&xi, &blur_filter(Device::Cpu), 2, 1, [3, 2, 3, 2], 4.0);
                u.conv2d(&wi, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)
            } else {
                xi.conv2d(&wi, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1)
            }
        })
        .collect();
    Tensor::cat(&outs, 0)
}

#[test]
fn modulated_conv_matches_per_sample_weight_definition() {
    tch::manual_seed(2);
    for up in [false, true] {
        let vs = VarStore::new(Device::Cpu);
        let conv = ModulatedConv2d::new(vs.root(), 6, 5, 7, 3, up, true);
        let x = Tensor::randn([3, 5, 8, 8], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([3, 6], (Kind::Float, Device::Cpu));
        let y = conv.forward(&x, &w);
        assert_eq!(
            y.size(),
            [3, 7, if up { 16 } else { 8 }, if up { 16 } else { 8 }]
        );
        close(&y, &reference_modconv(&vs, &x, &w, up), 1e-4);
    }
}

fn gcfg(res: i64) -> GeneratorConfig {
    GeneratorConfig {
        z_dim: 16,
        w_dim: 12,
        mapping_layers: 2,
        resolution: res,
        img_channels: 3,
        channel_base: 256,
        channel_max: 32,
    }
}

#[test]
fn generator_shapes_and_truncation() {
    tch::manual_seed(3);
    let cfg = gcfg(32);
    assert_eq!(cfg.block_resolutions(), [4, 8, 16, 32]);
    assert_eq!(cfg.num_ws(), 8);
    assert_eq!(
        (cfg.channels(4), cfg.channels(16), cfg.channels(32)),
        (32, 16, 8)
    );
    let vs = VarStore::new(Device::Cpu);
    let g = Generator::new(vs.root(), &cfg);
    let z = Tensor::randn([5, 16], (Kind::Float, Device::Cpu));
    let ws = g.map(&z, 1.0);
    assert_eq!(ws.size(), [5, 8, 12]);
    let img = g.forward(&z, 1.0, NoiseMode::Random);
    assert_eq!(img.size(), [5, 3, 32, 32]);
    // ψ = 0 maps every z to the tracked mean w: identical images with constant noise.
    g.update_w_avg(&ws);
    let img = g.forward(&z, 0.0, NoiseMode::Const);
    close(&img.get(0), &img.get(4), 1e-5);
    // The const noise mode is reproducible, the random one is not... once noise strength is non-zero.
    for (name, mut t) in vs.variables() {
        if name.ends_with("noise_strength") {
            tch::no_grad(|| {
                let _ = t.fill_(0.5);
            });
        }
    }
    let a = g.forward(&z, 1.0, NoiseMode::Const);
    close(&a, &g.forward(&z, 1.0, NoiseMode::Const), 0.0);
    assert!(!a.allclose(&g.forward(&z, 1.0, NoiseMode::Random), 1e-4, 1e-4, false));
    // Layer names follow the blocks.
    let names = vs.variables();
    for n in [
        "mapping.fc0.weight",
        "mapping.w_avg",
        "synthesis.const",
        "synthesis.b4.conv1.conv.weight",
        "synthesis.b32.conv0.conv.affine.bias",
        "synthesis.b32.torgb.bias",
        "synthesis.b8.conv1.noise_const",
    ] {
        assert!(names.contains_key(n), "missing {n}");
    }
    assert!(!names.contains_key("synthesis.b4.conv0.conv.weight"));
}

#[test]
fn discriminator_shapes_and_minibatch_stddev() {
    tch::manual_seed(4);
    let cfg = DiscriminatorConfig {
        resolution: 32,
        img_channels: 1,
        channel_base: 256,
        channel_max: 32,
        mbstd_group: 4,
    };
    let vs = VarStore::new(Device::Cpu);
    let d = Discriminator::new(vs.root(), &cfg);
    for n in [1, 4, 6, 8] {
        let x = Tensor::randn([n, 1, 32, 32], (Kind::Float, Device::Cpu));
        assert_eq!(d.forward(&x).size(), [n, 1]);
    }
    assert!(vs.variables().contains_key("b32.fromrgb.weight"));
    assert!(!vs.variables().contains_key("b16.fromrgb.weight"));
    assert!(!vs.variables().contains_key("b32.skip.bias"));
    // The stddev channel: group g = {g, g + N/G, ...}; value = mean over c,h,w of the std over the group.
    let x = Tensor::randn([8, 2, 3, 3], (Kind::Float, Device::Cpu));
    let y = vagan::nets::discriminator::minibatch_stddev(&x, 4);
    assert_eq!(y.size(), [8, 3, 3, 3]);
    let group0 = x.index_select(0, &Tensor::from_slice(&[0i64, 2, 4, 6]));
    let expected = (group0.var_dim(0, false, false) + 1e-8)
        .sqrt()
        .mean(Kind::Float)
        .double_value(&[]);
    for i in [0, 2, 4, 6] {
        let v = y.get(i).get(2);
        close(
            &v,
            &Tensor::full([3, 3], expected, (Kind::Float, Device::Cpu)),
            1e-5,
        );
    }
}
