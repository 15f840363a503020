//! DiffAugment semantics: translation fills zeros, cutout size, colour ranges, gradients.
use tch::{Device, Kind, Tensor};
use vagan::augment::diffaugment::{color, cutout, translation, Policy};

fn opts() -> (Kind, Device) {
    (Kind::Float, Device::Cpu)
}

#[test]
fn policy_parses_and_rejects_unknown_ops() {
    let p: Policy = "color,translation,cutout".parse().unwrap();
    assert_eq!(p.0.len(), 3);
    assert_eq!(p.to_string(), "color,translation,cutout");
    assert!("none".parse::<Policy>().unwrap().is_empty());
    let err = "color,flip".parse::<Policy>().unwrap_err().to_string();
    assert!(err.contains("flip"), "{err}");
}

/// Each pixel of a ramp image names its own position, so a translated image reveals its shift.
#[test]
fn translation_shifts_by_at_most_an_eighth_and_fills_zeros() {
    tch::manual_seed(0);
    let (n, h, w) = (256i64, 16i64, 16i64);
    let ramp = (Tensor::arange(h * w, opts()) + 1.0)
        .reshape([1, 1, h, w])
        .repeat([n, 1, 1, 1]);
    let y = translation(&ramp, 0.125);
    let y = Vec::<f32>::try_from(y.flatten(0, -1)).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for s in 0..n as usize {
        let mut shift = None;
        for i in 0..h as usize {
            for j in 0..w as usize {
                let v = y[s * 256 + i * 16 + j];
                if v == 0.0 {
                    continue;
                }
                let src = v as i64 - 1;
                let (di, dj) = (src / w - i as i64, src % w - j as i64);
                assert_eq!(
                    *shift.get_or_insert((di, dj)),
                    (di, dj),
                    "sample {s} is not a pure shift"
                );
            }
        }
        let (di, dj) = shift.expect("some pixels survive");
        assert!(
            di.abs() <= 2 && dj.abs() <= 2,
            "shift ({di}, {dj}) beyond round(16/8) = 2"
        );
        // Every pixel whose source lies outside the image is zero, every other is its source.
        for i in 0..16i64 {
            for j in 0..16i64 {
                let inside = (0..16).contains(&(i + di)) && (0..16).contains(&(j + dj));
                let v = y[s * 256 + (i * 16 + j) as usize];
                assert_eq!(v == 0.0, !inside);
            }
        }
        seen.insert((di, dj));
    }
    assert!(
        seen.contains(&(-2, -2))
            || seen.contains(&(-2, 2))
            || seen.contains(&(2, -2))
            || seen.contains(&(2, 2))
    );
    assert!(seen.len() > 15, "shifts not spread: {seen:?}");
}

#[test]
fn cutout_zeroes_one_clipped_square_of_half_the_side() {
    tch::manual_seed(1);
    let (n, h, w) = (500i64, 16i64, 16i64);
    let y = cutout(&Tensor::ones([n, 3, h, w], opts()), 0.5);
    let mut full_squares = 0;
    for s in 0..n {
        let m = y.get(s).get(0);
        // Same hole in every channel.
        assert!(y.get(s).get(1).equal(&m) && y.get(s).get(2).equal(&m));
        let zero = m.eq(0.0);
        let count = zero.sum(Kind::Int64).int64_value(&[]);
        assert!((1..=64).contains(&count), "hole of {count} pixels");
        // The hole is the product of a run of rows and a run of columns.
        let rows = zero.any_dim(1, false).sum(Kind::Int64).int64_value(&[]);
        let cols = zero.any_dim(0, false).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(rows * cols, count);
        assert!(rows <= 8 && cols <= 8);
        if count == 64 {
            full_squares += 1;
        }
    }
    assert!(
        full_squares > n / 4,
        "only {full_squares} unclipped 8×8 squares"
    );
}

#[test]
fn color_ranges() {
    tch::manual_seed(2);
    // A flat grey image: saturation and contrast have nothing to act on; brightness adds U(-0.5, 0.5).
    let n = 2000;
    let flat = Tensor::full([n, 3, 4, 4], 0.1, opts());
    let d = color(&flat) - 0.1;
    let per_sample = d.amax(&[1i64, 2, 3][..], false);
    assert!(
        d.std_dim(&[1i64, 2, 3][..], true, false)
            .max()
            .double_value(&[])
            < 1e-5
    );
    let (lo, hi) = (
        per_sample.min().double_value(&[]),
        per_sample.max().double_value(&[]),
    );
    assert!(
        lo >= -0.5 - 1e-6 && hi <= 0.5 + 1e-6,
        "brightness in [{lo}, {hi}]"
    );
    assert!(
        lo < -0.45 && hi > 0.45,
        "brightness does not span its range: [{lo}, {hi}]"
    );
    // Pure chroma (channel deviations only): saturation scales by U(0, 2), contrast by U(0.5, 1.5).
    let chroma = Tensor::from_slice(&[0.3f32, -0.1, -0.2])
        .reshape([1, 3, 1, 1])
        .repeat([n, 1, 4, 4]);
    let y = color(&chroma);
    let dev = &y - y.mean_dim(1, true, Kind::Float);
    let ratio = dev
        .select(1, 0)
        .mean_dim(&[1i64, 2][..], false, Kind::Float)
        / 0.3;
    let (lo, hi) = (ratio.min().double_value(&[]), ratio.max().double_value(&[]));
    assert!(
        lo >= -1e-5 && hi <= 3.0 + 1e-5,
        "chroma factor in [{lo}, {hi}]"
    );
    assert!(hi > 2.0, "chroma factor never above 2: {hi}");
}

#[test]
fn augmentation_is_differentiable() {
    tch::manual_seed(3);
    let x = Tensor::randn([4, 3, 16, 16], opts()).set_requires_grad(true);
    let p: Policy = "color,translation,cutout".parse().unwrap();
    let y = p.apply(&x);
    assert_eq!(y.size(), x.size());
    y.sum(Kind::Float).backward();
    let g = x.grad();
    assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    // Without colour (whose means touch every pixel), pixels cut out get no gradient.
    let x = Tensor::randn([4, 3, 16, 16], opts()).set_requires_grad(true);
    let p: Policy = "translation,cutout".parse().unwrap();
    p.apply(&x).sum(Kind::Float).backward();
    let zero = x.grad().eq(0.0).sum(Kind::Int64).int64_value(&[]);
    assert!(zero >= 4 * 3 * 16, "only {zero} pixels without gradient");
}
