//! ADA ("bgc") semantics: exact pixel blits, resampling about the centre, the paper's
//! parameter laws and probabilities, colour matrices, gradients, determinism, grey images.
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};
use vagan::augment::ada::{AdaPipeline, Transform};

/// libtorch's generator is global and the tests run on parallel threads: a test holds this
/// lock, from seeding until it has drawn its last number.
static GENERATOR: Mutex<()> = Mutex::new(());

fn seed(seed: i64) -> MutexGuard<'static, ()> {
    let guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    guard
}

fn images(n: i64, c: i64, size: i64) -> Tensor {
    Tensor::rand([n, c, size, size], (Kind::Float, Device::Cpu)) * 2.0 - 1.0
}

/// Per sample, the largest absolute difference.
fn max_diff(a: &Tensor, b: &Tensor) -> Vec<f32> {
    Vec::try_from((a - b).abs().flatten(1, -1).amax(1, false)).unwrap()
}

fn changed_fraction(a: &Tensor, b: &Tensor, tolerance: f32) -> f64 {
    let d = max_diff(a, b);
    d.iter().filter(|&&v| v > tolerance).count() as f64 / d.len() as f64
}

#[test]
fn spec_parses_and_displays() {
    for spec in [
        "bgc",
        "bg",
        "c",
        "b",
        "g",
        "gc",
        "none",
        "xflip",
        "rotate=0.5,hue",
    ] {
        let pipeline: AdaPipeline = spec.parse().unwrap();
        assert_eq!(pipeline.to_string(), spec);
    }
    assert_eq!("bgc".parse::<AdaPipeline>().unwrap(), AdaPipeline::bgc());
    let bg: AdaPipeline = "bg".parse().unwrap();
    assert_eq!(bg.multiplier(Transform::XFrac), 1.0);
    assert_eq!(bg.multiplier(Transform::Hue), 0.0);
    assert_eq!(
        AdaPipeline::only(Transform::Rotate90).to_string(),
        "rotate90"
    );
    assert_eq!(
        "xflip,rotate90,xint"
            .parse::<AdaPipeline>()
            .unwrap()
            .to_string(),
        "b"
    );
    for bad in ["", "cb", "flip", "hue=-1", "hue=x"] {
        assert!(bad.parse::<AdaPipeline>().is_err(), "{bad}");
    }
}

#[test]
fn p_zero_returns_the_input_bit_for_bit() {
    let _generator = seed(0);
    let x = images(4, 3, 16);
    assert!(AdaPipeline::bgc().apply(&x, 0.0).equal(&x));
}

#[test]
fn xflip_alone_mirrors_exactly() {
    let _generator = seed(1);
    let x = images(64, 3, 9);
    let y = AdaPipeline::only(Transform::XFlip).apply(&x, 1.0);
    let mut mirrored = 0;
    for i in 0..64 {
        let (xi, yi) = (x.get(i), y.get(i));
        if yi.equal(&xi.flip([2])) {
            mirrored += 1;
        } else {
            assert!(yi.equal(&xi), "sample {i} neither kept nor mirrored");
        }
    }
    assert!((16..=48).contains(&mirrored), "{mirrored} of 64 mirrored");
}

#[test]
fn rotate90_alone_gives_exact_quarter_turns() {
    let _generator = seed(2);
    let x = images(64, 1, 8);
    let y = AdaPipeline::only(Transform::Rotate90).apply(&x, 1.0);
    let mut seen = [0; 4];
    for i in 0..64 {
        let (xi, yi) = (x.get(i), y.get(i));
        let k = (0..4)
            .find(|&k| yi.equal(&xi.rot90(k, [1, 2])))
            .unwrap_or_else(|| panic!("sample {i} is not a quarter turn"));
        seen[k as usize] += 1;
    }
    assert!(seen.iter().all(|&s| s > 0), "{seen:?}");
}

/// Every output is a window of the reflect-padded input shifted by at most round(size/8).
#[test]
fn integer_translation_copies_pixels_with_reflection() {
    let _generator = seed(3);
    let (n, size, max) = (32, 16, 2);
    let x = images(n, 3, size);
    let y = AdaPipeline::only(Transform::XInt).apply(&x, 1.0);
    let padded = x.reflection_pad2d([max, max, max, max]);
    let mut shifted = 0;
    for i in 0..n {
        let yi = y.get(i);
        let shift = (0..=2 * max)
            .flat_map(|r| (0..=2 * max).map(move |c| (r, c)))
            .find(|&(r, c)| yi.equal(&padded.get(i).narrow(1, r, size).narrow(2, c, size)))
            .unwrap_or_else(|| panic!("sample {i} is no reflected shift"));
        shifted += usize::from(shift != (max, max));
    }
    assert!(shifted > n as usize / 2, "{shifted} of {n} shifted");
}

/// In a batch that is resampled, samples whose gates all stayed shut pass the
/// upsample-sample-downsample chain unchanged but for rounding: the filter is orthonormal and
/// the 2× grids line up.
#[test]
fn untouched_samples_survive_resampling() {
    let _generator = seed(4);
    let x = images(64, 3, 12);
    let y = AdaPipeline::only(Transform::Scale).apply(&x, 0.5);
    let d = max_diff(&x, &y);
    let kept = d.iter().filter(|&&v| v < 1e-5).count();
    let changed = d.iter().filter(|&&v| v > 1e-3).count();
    assert_eq!(kept + changed, 64, "{d:?}");
    assert!(kept > 10 && changed > 10, "{kept} kept, {changed} changed");
}

/// A Gaussian blob of `sigma` pixels at (x, y) from the top-left pixel centre.
fn blob(size: i64, x: f64, y: f64, sigma: f64) -> Tensor {
    let r = Tensor::arange(size, (Kind::Double, Device::Cpu));
    let gx = (-(&r - x).square() / (2.0 * sigma * sigma)).exp();
    let gy = (-(&r - y).square() / (2.0 * sigma * sigma)).exp();
    gy.unsqueeze(1)
        .matmul(&gx.unsqueeze(0))
        .to_kind(Kind::Float)
        .reshape([1, 1, size, size])
}

/// Mass and centroid (x, y) of each [1, H, W] image.
fn moments(y: &Tensor) -> Vec<(f64, f64, f64)> {
    let (n, _, h, w) = y.size4().unwrap();
    let y = y.to_kind(Kind::Double);
    let mass = y.sum_dim_intlist(&[1i64, 2, 3][..], false, None::<Kind>);
    let xs = Tensor::arange(w, (Kind::Double, Device::Cpu)).reshape([1, 1, 1, w]);
    let ys = Tensor::arange(h, (Kind::Double, Device::Cpu)).reshape([1, 1, h, 1]);
    let cx = (&y * xs).sum_dim_intlist(&[1i64, 2, 3][..], false, None::<Kind>) / &mass;
    let cy = (&y * ys).sum_dim_intlist(&[1i64, 2, 3][..], false, None::<Kind>) / &mass;
    let v = |t: Tensor| Vec::<f64>::try_from(t).unwrap();
    let (mass, cx, cy) = (v(mass), v(cx), v(cy));
    (0..n as usize).map(|i| (mass[i], cx[i], cy[i])).collect()
}

/// Rotation keeps a centred symmetric blob in place and an off-centre blob at its distance from
/// the centre: the matrix turns about the image centre.
#[test]
fn rotation_turns_about_the_centre() {
    let _generator = seed(5);
    let (n, size) = (16, 32);
    let centre = (size - 1) as f64 / 2.0;
    let rotate = AdaPipeline::only(Transform::Rotate);
    let centred = blob(size, centre, centre, 2.5).repeat([n, 1, 1, 1]);
    let y = rotate.apply(&centred, 1.0);
    let err = max_diff(&centred, &y);
    assert!(err.iter().all(|&e| e < 0.02), "{err:?}");

    let off = blob(size, centre + 5.0, centre, 1.5).repeat([n, 1, 1, 1]);
    let y = rotate.apply(&off, 1.0);
    let mut turned = 0;
    for (mass, cx, cy) in moments(&y) {
        let radius = (cx - centre).hypot(cy - centre);
        assert!((radius - 5.0).abs() < 0.05, "radius {radius}");
        assert!(
            (mass - 2.0 * std::f64::consts::PI * 1.5 * 1.5).abs() < 0.05,
            "mass {mass}"
        );
        turned += usize::from((cy - centre).abs() > 0.5);
    }
    assert!(turned > n as usize / 2);
}

#[test]
fn full_pipeline_changes_every_sample_and_stays_finite() {
    let _generator = seed(6);
    let x = images(16, 3, 32);
    let y = AdaPipeline::bgc().apply(&x, 1.0);
    assert_eq!(y.size(), x.size());
    assert!(bool::try_from(y.isfinite().all()).unwrap());
    let largest = f64::try_from(y.abs().max()).unwrap();
    assert!(largest < 50.0, "{largest}");
    assert!(max_diff(&x, &y).iter().all(|&d| d > 1e-3));
}

/// First and second order: R1 differentiates D(augment(x)) with respect to x and then the
/// weights, so the gradient's own gradient must exist too.
#[test]
fn gradients_flow_to_the_images() {
    let _generator = seed(7);
    let x = images(4, 3, 16).set_requires_grad(true);
    let y = AdaPipeline::bgc().apply(&x, 1.0);
    let weights = Tensor::randn(y.size(), (Kind::Float, Device::Cpu));
    let loss = (&y * &weights).square().sum(None::<Kind>);
    let grad = Tensor::run_backward(&[&loss], &[&x], true, true).remove(0);
    assert!(bool::try_from(grad.isfinite().all()).unwrap());
    assert!(f64::try_from(grad.abs().sum(None::<Kind>)).unwrap() > 0.0);
    let penalty = grad.square().sum(None::<Kind>);
    let second = Tensor::run_backward(&[&penalty], &[&x], false, false).remove(0);
    assert!(bool::try_from(second.isfinite().all()).unwrap());
    assert!(f64::try_from(second.abs().sum(None::<Kind>)).unwrap() > 0.0);
}

#[test]
fn the_same_seed_gives_the_same_augmentation() {
    let _generator = seed(0);
    let x = images(8, 3, 16);
    let run = |seed| {
        tch::manual_seed(seed);
        AdaPipeline::bgc().apply(&x, 0.7)
    };
    assert!(run(11).equal(&run(11)));
    assert!(!run(11).equal(&run(12)));
}

/// With p = 0.5 each transform changes the fraction of samples its parameter law predicts.
#[test]
fn each_transform_fires_with_probability_p() {
    use Transform::*;
    let _generator = seed(8);
    let (n, p) = (1000, 0.5);
    let rgb = images(n, 3, 8);
    // The geometric transforms are measured on grey images: a third of the work.
    let grey = rgb.narrow(1, 0, 1);
    // xflip and lumaflip pick the identity half the time, rotate90 a quarter of the time,
    // xint a zero shift (|t·8| < 0.5 on both axes) with probability 1/4.
    let expected = [
        (XFlip, p / 2.0),
        (Rotate90, p * 0.75),
        (XInt, p * 0.75),
        (Scale, p),
        (Rotate, p),
        (Aniso, p),
        (XFrac, p),
        (Brightness, p),
        (Contrast, p),
        (LumaFlip, p / 2.0),
        (Hue, p),
        (Saturation, p),
    ];
    for (transform, expected) in expected {
        let geometric = matches!(
            transform,
            XFlip | Rotate90 | XInt | Scale | Rotate | Aniso | XFrac
        );
        let x = if geometric { &grey } else { &rgb };
        let y = AdaPipeline::only(transform).apply(x, p);
        let fraction = changed_fraction(x, &y, 1e-4);
        // Four standard deviations of a binomial fraction over 1000 samples is at most 0.064.
        assert!(
            (fraction - expected).abs() < 0.064,
            "{}: {fraction} vs {expected}",
            transform.name()
        );
    }
}

fn std(values: &[f64]) -> f64 {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt()
}

/// The paper's laws, seen through their effect at p = 1: the standard deviation of each
/// parameter over 300 samples within 15% (its sampling error is about 4%).
#[test]
fn parameters_follow_the_papers_distributions() {
    use Transform::*;
    let _generator = seed(13);
    let n = 300;
    let close = |measured: f64, expected: f64, what: &str| {
        assert!(
            (measured / expected - 1.0).abs() < 0.15,
            "{what}: std {measured} vs {expected}"
        );
    };
    // xfrac: shifts of N(0, (0.125·size)²) pixels per axis, seen as a small blob's centroid.
    let (size, sigma) = (48, 1.5);
    let centre = (size - 1) as f64 / 2.0;
    let x = blob(size, centre, centre, sigma).repeat([n, 1, 1, 1]);
    let y = AdaPipeline::only(XFrac).apply(&x, 1.0);
    let (dx, dy): (Vec<f64>, Vec<f64>) = moments(&y)
        .into_iter()
        .map(|(_, cx, cy)| (cx - centre, cy - centre))
        .unzip();
    close(std(&dx), 0.125 * size as f64, "xfrac x");
    close(std(&dy), 0.125 * size as f64, "xfrac y");

    // scale: a centred blob's width times s, log2 s ~ N(0, 0.2²).
    let (size, sigma) = (32, 3.0);
    let centre = (size - 1) as f64 / 2.0;
    let x = blob(size, centre, centre, sigma).repeat([n, 1, 1, 1]);
    let y = AdaPipeline::only(Scale).apply(&x, 1.0);
    let r2 = (Tensor::arange(size, (Kind::Double, Device::Cpu)) - centre).square();
    let r2 = r2.unsqueeze(0) + r2.unsqueeze(1);
    let y = y.to_kind(Kind::Double);
    let spread = (&y * r2).sum_dim_intlist(&[1i64, 2, 3][..], false, None::<Kind>)
        / y.sum_dim_intlist(&[1i64, 2, 3][..], false, None::<Kind>);
    // The spread is 2σ² per blob.
    let octaves: Vec<f64> = Vec::<f64>::try_from(spread)
        .unwrap()
        .iter()
        .map(|v| (v / 2.0).sqrt().log2() - sigma.log2())
        .collect();
    close(std(&octaves), 0.2, "scale");

    // Colour: brightness adds N(0, 0.2²), contrast multiplies by 2^N(0, 0.5²), saturation
    // scales the chroma by 2^N(0, 1).
    let x = images(n, 3, 4);
    let per_sample =
        |t: Tensor| Vec::<f64>::try_from(t.select(1, 0).to_kind(Kind::Double)).unwrap();
    let y = AdaPipeline::only(Brightness).apply(&x, 1.0);
    close(
        std(&per_sample((&y - &x).flatten(1, -1))),
        0.2,
        "brightness",
    );
    let y = AdaPipeline::only(Contrast).apply(&x, 1.0);
    close(
        std(&per_sample((&y / &x).flatten(1, -1).log2())),
        0.5,
        "contrast",
    );
    let y = AdaPipeline::only(Saturation).apply(&x, 1.0);
    let chroma = |t: &Tensor| (t - t.mean_dim(1, true, None::<Kind>)).flatten(1, -1);
    close(
        std(&per_sample((chroma(&y) / chroma(&x)).abs().log2())),
        1.0,
        "saturation",
    );
}

#[test]
fn colour_matrices_act_in_the_luma_frame() {
    use Transform::*;
    let _generator = seed(9);
    let x = images(32, 3, 8);
    let luma = |t: &Tensor| t.mean_dim(1, true, None::<Kind>);
    // Chroma: the part of each pixel orthogonal to the grey axis.
    let chroma = |t: &Tensor| t - luma(t);
    let norm = |t: &Tensor| t.square().sum_dim_intlist(1, false, None::<Kind>).sqrt();
    let close = |a: &Tensor, b: &Tensor| a.allclose(b, 1e-4, 1e-5, false);

    let y = AdaPipeline::only(Brightness).apply(&x, 1.0);
    let shift = (&y - &x).flatten(1, -1);
    assert!(close(
        &shift,
        &shift.select(1, 0).unsqueeze(1).expand_as(&shift)
    ));

    let y = AdaPipeline::only(Contrast).apply(&x, 1.0);
    let ratio = (&y / &x).flatten(1, -1);
    assert!(close(
        &ratio,
        &ratio.select(1, 0).unsqueeze(1).expand_as(&ratio)
    ));

    // Hue turns the chroma about the grey axis: luma and chroma length stay.
    let y = AdaPipeline::only(Hue).apply(&x, 1.0);
    assert!(close(&luma(&y), &luma(&x)));
    assert!(close(&norm(&chroma(&y)), &norm(&chroma(&x))));
    assert!(changed_fraction(&x, &y, 1e-3) > 0.9);

    // Saturation scales the chroma by one factor per sample and keeps the luma.
    let y = AdaPipeline::only(Saturation).apply(&x, 1.0);
    assert!(close(&luma(&y), &luma(&x)));
    assert!(close(
        &chroma(&y),
        &(chroma(&x)
            * (&chroma(&y) / chroma(&x))
                .flatten(1, -1)
                .select(1, 0)
                .reshape([32, 1, 1, 1]))
    ));

    // Lumaflip negates the luma and keeps the chroma, or does nothing.
    let y = AdaPipeline::only(LumaFlip).apply(&x, 1.0);
    for i in 0..32 {
        let (xi, yi) = (x.get(i).unsqueeze(0), y.get(i).unsqueeze(0));
        assert!(close(&chroma(&yi), &chroma(&xi)));
        let l = luma(&yi);
        assert!(close(&l, &luma(&xi)) || close(&l, &-luma(&xi)));
    }
}

#[test]
fn grey_images_take_the_luma_only_colour_transforms() {
    use Transform::*;
    let _generator = seed(10);
    let x = images(32, 1, 16);
    let y = AdaPipeline::bgc().apply(&x, 1.0);
    assert_eq!(y.size(), x.size());
    assert!(bool::try_from(y.isfinite().all()).unwrap());
    // Rotating about, or scaling away from, the grey axis leaves a grey pixel where it is.
    let hue_saturation = AdaPipeline::only(Hue).with(Saturation, 1.0);
    assert!(hue_saturation
        .apply(&x, 1.0)
        .allclose(&x, 1e-5, 1e-5, false));
    let y = AdaPipeline::only(LumaFlip).apply(&x, 1.0);
    let d = max_diff(&x, &y);
    let negated = max_diff(&-&x, &y);
    assert!((0..32).all(|i| d[i] < 1e-6 || negated[i] < 1e-6));
    assert!(d.iter().any(|&v| v > 0.1) && negated.iter().any(|&v| v > 0.1));
}

/// The random parameters come from the CPU generator, so CUDA gives the CPU's result.
#[test]
fn cuda_matches_cpu() {
    if !tch::Cuda::is_available() {
        return;
    }
    let _generator = seed(0);
    let x = images(8, 3, 32);
    let run = |device| {
        tch::manual_seed(12);
        AdaPipeline::bgc()
            .apply(&x.to_device(device), 1.0)
            .to_device(Device::Cpu)
    };
    let (cpu, cuda) = (run(Device::Cpu), run(Device::Cuda(0)));
    let err = max_diff(&cpu, &cuda);
    assert!(err.iter().all(|&e| e < 1e-4), "{err:?}");
}

/// `cargo test --test ada -- --ignored --nocapture`: the cost of one call at p = 1.
#[test]
#[ignore]
fn timing() {
    let _generator = seed(0);
    for size in [32, 224] {
        let x = images(32, 3, size);
        let pipeline = AdaPipeline::bgc();
        let _ = pipeline.apply(&x, 1.0);
        // Seeds 0-4: the padding, hence the cost, depends on the draws.
        let times: Vec<f64> = (0..5)
            .map(|seed| {
                tch::manual_seed(seed);
                let start = std::time::Instant::now();
                let _ = pipeline.apply(&x, 1.0);
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let best = times.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "32×3×{size}×{size}, p = 1: {mean:.1} ms per call on average, {best:.1} ms at best"
        );
    }
}
