//! Network output → PNG files and grids.
use anyhow::{Context, Result};
use std::path::Path;
use tch::{Kind, Tensor};

/// Generator output in [-1, 1] → uint8, quantised exactly as StyleGAN2-ADA and clean-fid
/// expect: `(x·127.5 + 128).clamp(0, 255)`, then truncated.
pub fn to_u8(x: &Tensor) -> Tensor {
    (x * 127.5 + 128.0).clamp(0.0, 255.0).to_kind(Kind::Uint8)
}

/// Tiles N images [N, C, H, W] in [-1, 1] into a grid of `cols` columns and writes a PNG.
pub fn save_grid(images: &Tensor, cols: i64, path: &Path) -> Result<()> {
    let (n, c, h, w) = images.size4()?;
    let cols = cols.min(n).max(1);
    let rows = (n + cols - 1) / cols;
    let x = to_u8(&images.to_device(tch::Device::Cpu));
    let x = Tensor::cat(
        &[
            x,
            Tensor::zeros([rows * cols - n, c, h, w], (Kind::Uint8, tch::Device::Cpu)),
        ],
        0,
    );
    let grid = x
        .reshape([rows, cols, c, h, w])
        .permute([0, 3, 1, 4, 2])
        .reshape([rows * h, cols * w, c]);
    save_hwc(&grid, path)
}

/// Writes one image [C, H, W] in [-1, 1] as PNG.
pub fn save_image(image: &Tensor, path: &Path) -> Result<()> {
    save_hwc(
        &to_u8(&image.to_device(tch::Device::Cpu)).permute([1, 2, 0]),
        path,
    )
}

fn save_hwc(x: &Tensor, path: &Path) -> Result<()> {
    let (h, w, c) = x.size3()?;
    let x = x.contiguous();
    let mut buf = vec![0u8; (h * w * c) as usize];
    let n = buf.len();
    x.copy_data(&mut buf, n);
    let color = if c == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &buf,
        w as u32,
        h as u32,
        color,
    )
    .with_context(|| format!("encoding {}", path.display()))?;
    crate::util::write_atomic(path, |f| Ok(std::io::Write::write_all(f, &png)?))
}
