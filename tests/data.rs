//! Every data source on small generated files, and bad files.
mod common;
use image::{DynamicImage, ImageBuffer, Luma, Rgb, Rgba};
use std::io::Write;
use std::path::Path;
use tch::Device;
use vagan::data::convert::{convert, ConvertOptions, Transform};
use vagan::data::{Dataset, Item, Sampler};

fn opts(res: u32) -> ConvertOptions {
    ConvertOptions::new(res)
}

fn gradient_rgb(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| {
        Rgb([(x * 255 / w.max(2)) as u8, (y * 255 / h.max(2)) as u8, 128])
    }))
}

/// One image per supported format and pixel layout, of mixed sizes.
fn mixed_folder(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    gradient_rgb(40, 30).save(dir.join("a_rgb.png")).unwrap();
    DynamicImage::ImageRgba8(ImageBuffer::from_fn(20, 20, |x, _| {
        Rgba([200, 10, 10, (x * 10) as u8])
    }))
    .save(dir.join("b_rgba.png"))
    .unwrap();
    DynamicImage::ImageLuma8(ImageBuffer::from_fn(17, 23, |x, y| {
        Luma([(x + y) as u8 * 5])
    }))
    .save(dir.join("c_grey.png"))
    .unwrap();
    DynamicImage::ImageRgb16(ImageBuffer::from_fn(16, 16, |x, _| {
        Rgb([x as u16 * 4000, 65535, 0])
    }))
    .save(dir.join("d_16bit.png"))
    .unwrap();
    gradient_rgb(33, 33).save(dir.join("e.jpg")).unwrap();
    gradient_rgb(16, 8).save(dir.join("sub/f.bmp")).unwrap();
    gradient_rgb(24, 24).save(dir.join("sub/g.webp")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
}

#[test]
fn folder_of_mixed_formats_sizes_and_channels() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("imgs");
    mixed_folder(&src);
    for t in [Transform::CenterCrop, Transform::Pad, Transform::Stretch] {
        let dest = tmp.path().join(format!("{t}.vds"));
        let rep = convert(
            &src,
            &dest,
            &ConvertOptions {
                transform: t,
                ..opts(16)
            },
        )
        .unwrap();
        assert_eq!(rep.written, 7, "{t}");
        assert_eq!(rep.header.channels, 3);
        let ds = Dataset::open(&dest).unwrap();
        assert_eq!(ds.len(), 7);
        assert_eq!(ds.images_u8(&[0, 6]).size(), [2, 3, 16, 16]);
        assert!(!ds.header.has_labels);
    }
    // The 16-bit image keeps its values (scaled to 8 bits): green channel full, blue empty.
    let ds = Dataset::open(&tmp.path().join("stretch.vds")).unwrap();
    let d16 = ds.images_u8(&[3]);
    assert_eq!(d16.get(0).get(1).min().int64_value(&[]), 255);
    assert_eq!(d16.get(0).get(2).max().int64_value(&[]), 0);
}

#[test]
fn pad_centres_the_image_on_black() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("wide");
    std::fs::create_dir_all(&src).unwrap();
    DynamicImage::ImageRgb8(ImageBuffer::from_pixel(16, 8, Rgb([255, 255, 255])))
        .save(src.join("w.png"))
        .unwrap();
    let dest = tmp.path().join("p.vds");
    convert(
        &src,
        &dest,
        &ConvertOptions {
            transform: Transform::Pad,
            ..opts(16)
        },
    )
    .unwrap();
    let img = Dataset::open(&dest).unwrap().images_u8(&[0]).get(0).get(0);
    assert_eq!(
        img.narrow(0, 0, 4).max().int64_value(&[]),
        0,
        "top band black"
    );
    assert_eq!(
        img.narrow(0, 12, 4).max().int64_value(&[]),
        0,
        "bottom band black"
    );
    assert_eq!(
        img.narrow(0, 4, 8).min().int64_value(&[]),
        255,
        "middle white"
    );
    // center-crop keeps the middle 8×8 and scales it up: all white.
    convert(&src, &dest, &opts(16)).unwrap();
    assert_eq!(
        Dataset::open(&dest)
            .unwrap()
            .images_u8(&[0])
            .min()
            .int64_value(&[]),
        255
    );
}

#[test]
fn grey_folders_become_one_channel_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("grey");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..3u8 {
        DynamicImage::ImageLuma8(ImageBuffer::from_pixel(8, 8, Luma([i * 50])))
            .save(src.join(format!("{i}.png")))
            .unwrap();
    }
    let dest = tmp.path().join("g.vds");
    assert_eq!(convert(&src, &dest, &opts(8)).unwrap().header.channels, 1);
    let ds = Dataset::open(&dest).unwrap();
    assert_eq!(ds.images_u8(&[2]).max().int64_value(&[]), 100);
    assert_eq!(
        convert(
            &src,
            &dest,
            &ConvertOptions {
                channels: Some(3),
                ..opts(8)
            }
        )
        .unwrap()
        .header
        .channels,
        3
    );
    // Colour forced to grey.
    let csrc = tmp.path().join("colour");
    mixed_folder(&csrc);
    assert_eq!(
        convert(
            &csrc,
            &dest,
            &ConvertOptions {
                channels: Some(1),
                ..opts(8)
            }
        )
        .unwrap()
        .header
        .channels,
        1
    );
    let err = convert(
        &csrc,
        &dest,
        &ConvertOptions {
            channels: Some(2),
            ..opts(8)
        },
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("--channels 2"), "{err:#}");
}

#[test]
fn corrupt_and_unsupported_files_are_named_or_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("bad");
    mixed_folder(&src);
    std::fs::write(
        src.join("broken.png"),
        b"\x89PNG\r\n\x1a\nthis is not a png",
    )
    .unwrap();
    let dest = tmp.path().join("b.vds");
    let err = format!("{:#}", convert(&src, &dest, &opts(8)).unwrap_err());
    assert!(
        err.contains("broken.png") && err.contains("--skip-bad"),
        "{err}"
    );
    assert!(
        !dest.exists(),
        "a failed conversion must not leave a dataset file"
    );
    let rep = convert(
        &src,
        &dest,
        &ConvertOptions {
            skip_bad: true,
            ..opts(8)
        },
    )
    .unwrap();
    assert_eq!((rep.written, rep.skipped), (7, 1));
    assert!(rep.first_skipped.unwrap().contains("broken.png"));
    std::fs::write(src.join("anim.gif"), b"GIF89a").unwrap();
    let err = format!(
        "{:#}",
        convert(
            &src,
            &dest,
            &ConvertOptions {
                skip_bad: false,
                ..opts(8)
            }
        )
        .unwrap_err()
    );
    assert!(
        err.contains("anim.gif") || err.contains("broken.png"),
        "{err}"
    );
    std::fs::remove_file(src.join("broken.png")).unwrap();
    let err = format!("{:#}", convert(&src, &dest, &opts(8)).unwrap_err());
    assert!(
        err.contains("anim.gif") && err.contains("unsupported"),
        "{err}"
    );
    // Empty folder, missing path, unknown file type.
    std::fs::create_dir_all(tmp.path().join("empty")).unwrap();
    assert!(format!(
        "{:#}",
        convert(&tmp.path().join("empty"), &dest, &opts(8)).unwrap_err()
    )
    .contains("no images"));
    assert!(format!(
        "{:#}",
        convert(&tmp.path().join("nope"), &dest, &opts(8)).unwrap_err()
    )
    .contains("no such file"));
    std::fs::write(tmp.path().join("x.bin"), b"hello world").unwrap();
    assert!(format!(
        "{:#}",
        convert(&tmp.path().join("x.bin"), &dest, &opts(8)).unwrap_err()
    )
    .contains("not a folder"));
}

#[test]
fn zip_with_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let zpath = tmp.path().join("set.zip");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&zpath).unwrap());
    let o = zip::write::SimpleFileOptions::default();
    for (i, name) in ["x/0.png", "x/1.png", "y/2.jpg"].iter().enumerate() {
        let mut buf = std::io::Cursor::new(Vec::new());
        let fmt = if name.ends_with("png") {
            image::ImageFormat::Png
        } else {
            image::ImageFormat::Jpeg
        };
        gradient_rgb(10 + i as u32, 12)
            .write_to(&mut buf, fmt)
            .unwrap();
        z.start_file(*name, o).unwrap();
        z.write_all(buf.get_ref()).unwrap();
    }
    z.start_file("dataset.json", o).unwrap();
    z.write_all(br#"{"labels": [["x/0.png", 0], ["x/1.png", 4], ["y/2.jpg", 2]]}"#)
        .unwrap();
    z.finish().unwrap();
    let dest = tmp.path().join("z.vds");
    let rep = convert(&zpath, &dest, &opts(8)).unwrap();
    assert_eq!(rep.written, 3);
    assert_eq!(rep.header.num_classes, 5);
    let ds = Dataset::open(&dest).unwrap();
    assert_eq!(
        Vec::<i64>::try_from(ds.labels(&[0, 1, 2]).unwrap()).unwrap(),
        [0, 4, 2]
    );
}

#[test]
fn idx_files_gzipped_or_not_with_sibling_labels_and_subsets() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("train-images-idx3-ubyte");
    common::write_idx(&raw, 50, 6, 1);
    let mut labels = vec![0u8, 0, 8, 1, 0, 0, 0, 50];
    labels.extend((0..50u8).map(|i| i % 10));
    std::fs::write(tmp.path().join("train-labels-idx1-ubyte"), &labels).unwrap();
    let dest = tmp.path().join("i.vds");
    let rep = convert(&raw, &dest, &opts(8)).unwrap();
    assert_eq!(
        (rep.written, rep.header.channels, rep.header.num_classes),
        (50, 1, 10)
    );
    // Gzipped copy gives the same file.
    let gz = tmp.path().join("copy-images-idx3-ubyte.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&std::fs::read(&raw).unwrap()).unwrap();
    enc.finish().unwrap();
    let dest2 = tmp.path().join("i2.vds");
    convert(&gz, &dest2, &opts(8)).unwrap();
    let (a, b) = (
        Dataset::open(&dest).unwrap(),
        Dataset::open(&dest2).unwrap(),
    );
    let all: Vec<i64> = (0..50).collect();
    assert!(a.images_u8(&all).equal(&b.images_u8(&all)));
    assert!(!b.header.has_labels, "no sibling label file for the copy");
    // Deterministic subsets: same seed, same images and labels; another seed, others.
    let sub = |seed, name: &str| {
        let d = tmp.path().join(name);
        convert(
            &raw,
            &d,
            &ConvertOptions {
                max_images: Some(10),
                seed,
                ..opts(8)
            },
        )
        .unwrap();
        Dataset::open(&d).unwrap()
    };
    let (s1, s2, s3) = (sub(5, "s1.vds"), sub(5, "s2.vds"), sub(6, "s3.vds"));
    let ten: Vec<i64> = (0..10).collect();
    assert_eq!(s1.len(), 10);
    assert!(s1.images_u8(&ten).equal(&s2.images_u8(&ten)));
    assert!(!s1.images_u8(&ten).equal(&s3.images_u8(&ten)));
    // Truncated IDX and truncated dataset files are reported.
    let bytes = std::fs::read(&raw).unwrap();
    std::fs::write(
        tmp.path().join("cut-images-idx3-ubyte"),
        &bytes[..bytes.len() - 5],
    )
    .unwrap();
    let err = format!(
        "{:#}",
        convert(&tmp.path().join("cut-images-idx3-ubyte"), &dest2, &opts(8)).unwrap_err()
    );
    assert!(err.contains("cut-images-idx3-ubyte"), "{err}");
    let ds_bytes = std::fs::read(&dest).unwrap();
    std::fs::write(
        tmp.path().join("short.vds"),
        &ds_bytes[..ds_bytes.len() - 1],
    )
    .unwrap();
    let err = format!(
        "{:#}",
        Dataset::open(&tmp.path().join("short.vds")).unwrap_err()
    );
    assert!(
        err.contains("short.vds") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn sampler_is_a_pure_function_of_position_and_covers_each_epoch() {
    let mut a = Sampler::new(10, true, 9);
    let epoch = a.take(0, 20);
    let mut seen: Vec<(usize, bool)> = epoch.iter().map(|i| (i.index, i.flip)).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 20, "each image and its mirror once per epoch");
    // Starting anywhere gives the same stream.
    let mut b = Sampler::new(10, true, 9);
    assert_eq!(b.take(13, 30), a.take(13, 30));
    assert_ne!(a.take(0, 20), a.take(20, 20), "epochs are reshuffled");
    let tmp = tempfile::tempdir().unwrap();
    let ds = Dataset::open(&common::tiny_dataset(tmp.path(), 3, 8)).unwrap();
    let x = ds.batch(
        &[
            Item {
                index: 1,
                flip: false,
            },
            Item {
                index: 1,
                flip: true,
            },
        ],
        Device::Cpu,
    );
    assert!(x.get(0).flip([2]).equal(&x.get(1)));
    assert!(x.min().double_value(&[]) >= -1.0 && x.max().double_value(&[]) <= 1.0);
}
