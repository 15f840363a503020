//! The bank builds every member by name, with the documented output shapes, frozen, with
//! gradients reaching the images; and it loads cached weights through each layout converter.
use tch::{Device, Kind, Tensor};
use vagan::backbones::bank::{Backbone, MEMBERS};
use vagan::weights::cache::Cache;

#[test]
fn every_member_builds_frozen_with_its_shapes() {
    tch::manual_seed(0);
    let expected: &[(&str, &[&[i64]], i64)] = &[
        ("clip_vit_b32", &[&[768, 7, 7], &[768, 7, 7]], 512),
        ("dino_vitb16", &[&[768, 14, 14], &[768, 14, 14]], 768),
        ("swin_t", &[&[768, 7, 7]], 768),
        ("vgg16", &[&[512, 7, 7]], 512),
        ("vgg16_antialiased", &[&[512, 7, 7]], 512),
        (
            "efficientnet_lite0",
            &[
                &[24, 56, 56],
                &[40, 28, 28],
                &[112, 14, 14],
                &[320, 7, 7],
                &[1280, 7, 7],
            ],
            1280,
        ),
    ];
    for (name, maps, pooled) in expected {
        let b = Backbone::random(name, Device::Cpu).unwrap();
        // A grey 32×32 batch: repeated to RGB and resized inside.
        let x = Tensor::rand([2, 1, 32, 32], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let f = b.forward(&(&x * 2.0 - 1.0));
        let shapes: Vec<Vec<i64>> = f.maps.iter().map(|m| m.size()[1..].to_vec()).collect();
        assert_eq!(
            shapes,
            maps.iter().map(|m| m.to_vec()).collect::<Vec<_>>(),
            "{name}"
        );
        assert_eq!(f.pooled.size(), [2, *pooled], "{name}");
        let total = f
            .maps
            .iter()
            .fold(f.pooled.sum(Kind::Float), |a, m| a + m.sum(Kind::Float));
        total.backward();
        assert!(
            x.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "{name}: no gradient to the images"
        );
    }
    assert!(MEMBERS.contains(&"efficientnet_lite2"));
    let err = Backbone::random("resnet50", Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("clip_vit_b32"), "{err}");
}

#[test]
fn load_reads_the_cache_and_reports_missing_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::at(tmp.path().to_path_buf());
    let err = Backbone::load("swin_t", &cache, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("vagan weights fetch swin_t"), "{err}");
    // The real EfficientNet-Lite0 weights, fetched by scripts/test.sh into the default cache.
    let real = Cache::open_default().unwrap();
    let b = Backbone::load("efficientnet_lite0", &real, Device::Cpu).unwrap();
    let f = tch::no_grad(|| b.forward(&Tensor::zeros([1, 3, 64, 64], (Kind::Float, Device::Cpu))));
    assert_eq!(f.maps.len(), 5);
}
