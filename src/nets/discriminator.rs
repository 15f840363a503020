//! The StyleGAN2 residual discriminator with minibatch standard deviation.
use super::layers::{ConvConfig, EqualConv2d, EqualLinear, LinearConfig};
use serde::{Deserialize, Serialize};
use tch::nn::Path;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiscriminatorConfig {
    pub resolution: i64,
    pub img_channels: i64,
    pub channel_base: i64,
    pub channel_max: i64,
    /// Group size of the minibatch standard deviation layer.
    pub mbstd_group: i64,
}

impl DiscriminatorConfig {
    pub fn channels(&self, res: i64) -> i64 {
        (self.channel_base / res).min(self.channel_max)
    }
}

#[derive(Debug)]
struct ResidualBlock {
    fromrgb: Option<EqualConv2d>,
    conv0: EqualConv2d,
    conv1: EqualConv2d,
    skip: EqualConv2d,
}

impl ResidualBlock {
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = match &self.fromrgb {
            Some(f) => f.forward(x, 1.),
            None => x.shallow_clone(),
        };
        // Both paths scaled by √0.5 so the sum keeps unit variance.
        let y = self.skip.forward(&x, 0.5f64.sqrt());
        let x = self
            .conv1
            .forward(&self.conv0.forward(&x, 1.), 0.5f64.sqrt());
        y + x
    }
}

#[derive(Debug)]
pub struct Discriminator {
    pub cfg: DiscriminatorConfig,
    blocks: Vec<ResidualBlock>,
    conv: EqualConv2d,
    fc: EqualLinear,
    out: EqualLinear,
}

impl Discriminator {
    pub fn new(vs: Path, cfg: &DiscriminatorConfig) -> Self {
        let resolutions: Vec<i64> = std::iter::successors(Some(cfg.resolution), |r| Some(r / 2))
            .take_while(|&r| r > 4)
            .collect();
        let blocks = resolutions
            .iter()
            .enumerate()
            .map(|(i, &res)| {
                let b = &vs / format!("b{res}");
                let tmp = cfg.channels(res);
                let out = cfg.channels(res / 2);
                ResidualBlock {
                    fromrgb: (i == 0).then(|| {
                        EqualConv2d::new(
                            &b / "fromrgb",
                            cfg.img_channels,
                            tmp,
                            1,
                            ConvConfig::default(),
                        )
                    }),
                    conv0: EqualConv2d::new(&b / "conv0", tmp, tmp, 3, ConvConfig::default()),
                    conv1: EqualConv2d::new(
                        &b / "conv1",
                        tmp,
                        out,
                        3,
                        ConvConfig {
                            down: true,
                            ..Default::default()
                        },
                    ),
                    skip: EqualConv2d::new(
                        &b / "skip",
                        tmp,
                        out,
                        1,
                        ConvConfig {
                            bias: false,
                            down: true,
                            activate: false,
                        },
                    ),
                }
            })
            .collect();
        let c4 = cfg.channels(4);
        let e = &vs / "b4";
        Self {
            cfg: cfg.clone(),
            blocks,
            conv: EqualConv2d::new(&e / "conv", c4 + 1, c4, 3, ConvConfig::default()),
            fc: EqualLinear::new(&e / "fc", c4 * 16, c4, LinearConfig::lrelu()),
            out: EqualLinear::new(&e / "out", c4, 1, LinearConfig::default()),
        }
    }

    /// Images in [-1, 1], NCHW → one logit per image, shape [N, 1].
    pub fn forward(&self, img: &Tensor) -> Tensor {
        let mut x = img.shallow_clone();
        for b in &self.blocks {
            x = b.forward(&x);
        }
        let x = minibatch_stddev(&x, self.cfg.mbstd_group);
        let x = self.conv.forward(&x, 1.);
        let x = self.fc.forward(&x.flatten(1, -1));
        self.out.forward(&x)
    }
}

/// Appends one feature map holding the standard deviation of the features across groups of
/// samples (averaged over channels and pixels), which lets D see a lack of variety.
/// Group g holds samples g, g+n, g+2n, ... (n = N / group); the group is the largest divisor
/// of the batch size not above `group_size`, so any batch size works.
pub fn minibatch_stddev(x: &Tensor, group_size: i64) -> Tensor {
    let (n, c, h, w) = x.size4().unwrap();
    let g = (1..=group_size.min(n)).rev().find(|g| n % g == 0).unwrap();
    let y = x.reshape([g, n / g, c, h, w]);
    let y = &y - y.mean_dim(0, true, None::<Kind>);
    let y = (y.square().mean_dim(0, false, None::<Kind>) + 1e-8).sqrt(); // [n/g, c, h, w]
    let y = y
        .mean_dim(&[1i64, 2, 3][..], false, None::<Kind>)
        .reshape([-1, 1, 1, 1]); // [n/g, 1, 1, 1]
    let y = y.repeat([g, 1, h, w]);
    Tensor::cat(&[x, &y], 1)
}
