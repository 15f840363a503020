//! The trainable heads on the frozen backbones, in the StyleGAN2 variant (reference §2.2 "A"):
//! equalised-learning-rate convolutions and fully connected layers with lrelu·√2, blurred
//! down-sampling by upfirdn2d, no spectral norm, no class conditioning.
//!
//! The spatial arithmetic (with the [1,3,3,1] filter):
//! - 3×3 conv with `down = 2`: blur with pad 2 (H → H+1), then a stride-2 3×3 conv:
//!   14 → 15 → 7, 7 → 8 → 3, 8 → 9 → 4;
//! - 1×1 conv with `down = 2`: blur with pad 1 and subsample (7 → 6 → 3).
//!
//! Both are [`EqualConv2d`] with `down: true`.
//!
//! The spectral-norm variant (the pip package's heads) is not implemented.
use crate::backbones::bank::Features;
use crate::nets::layers::{ConvConfig, EqualConv2d, EqualLinear, LinearConfig};
use anyhow::{bail, Result};
use tch::nn::Path;
use tch::Tensor;

/// Width of the hidden layers of SimpleD and MLPD.
pub const HIDDEN: i64 = 256;

fn lrelu_conv(vs: Path, in_ch: i64, out_ch: i64, kernel: i64, down: bool) -> EqualConv2d {
    EqualConv2d::new(
        vs,
        in_ch,
        out_ch,
        kernel,
        ConvConfig {
            bias: true,
            down,
            activate: true,
        },
    )
}

/// One spatial level of [`MultiLevelDViT`]: a 3×3 conv (stride 1, or blurred stride 2) with
/// lrelu, then a blurred stride-2 1×1 conv to one channel, squeezed to `[B, H', W']`.
#[derive(Debug)]
struct SpatialLevel {
    conv: EqualConv2d,
    out: EqualConv2d,
}

impl SpatialLevel {
    fn new(vs: Path, in_ch: i64, out_ch: i64, down: i64) -> Self {
        Self {
            conv: lrelu_conv(&vs / "conv", in_ch, out_ch, 3, down == 2),
            out: EqualConv2d::new(
                &vs / "out",
                out_ch,
                1,
                1,
                ConvConfig {
                    bias: true,
                    down: true,
                    activate: false,
                },
            ),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.conv.forward(x, 1.0);
        self.out.forward(&h, 1.0).squeeze_dim(1)
    }
}

/// The multi-level head of CLIP and DINO: `level − 1` spatial token maps `[B, in_ch1, H, W]`
/// each give a `[B, 3, 3]` logit map, the final pooled vector `[B, in_ch2]` gives `[B, 1]`.
/// CLIP: (768, 512, 256, down 1) on 7×7 maps; DINO: (768, 768, 128, down 2) on 14×14 maps.
#[derive(Debug)]
pub struct MultiLevelDViT {
    levels: Vec<SpatialLevel>,
    fc: EqualLinear,
    out: EqualLinear,
}

impl MultiLevelDViT {
    /// `down` is 1 or 2 (the stride of the first conv on each spatial level).
    pub fn new(vs: Path, level: usize, in_ch1: i64, in_ch2: i64, out_ch: i64, down: i64) -> Self {
        assert!(level >= 1, "MultiLevelDViT needs at least one level");
        assert!(
            down == 1 || down == 2,
            "MultiLevelDViT: down must be 1 or 2, got {down}"
        );
        let levels = (0..level - 1)
            .map(|i| SpatialLevel::new(&vs / format!("level{i}"), in_ch1, out_ch, down))
            .collect();
        Self {
            levels,
            fc: EqualLinear::new(&vs / "fc", in_ch2, out_ch, LinearConfig::lrelu()),
            out: EqualLinear::new(&vs / "out", out_ch, 1, LinearConfig::default()),
        }
    }

    /// `maps`: the `level − 1` spatial maps, `last`: the pooled vector. Returns the per-level
    /// logits, `[B, 3, 3]` for each map and `[B, 1]` last.
    pub fn forward(&self, maps: &[Tensor], last: &Tensor) -> Vec<Tensor> {
        assert_eq!(
            maps.len(),
            self.levels.len(),
            "MultiLevelDViT expects {} spatial maps, got {}",
            self.levels.len(),
            maps.len()
        );
        let mut out: Vec<Tensor> = self
            .levels
            .iter()
            .zip(maps)
            .map(|(l, x)| l.forward(x))
            .collect();
        out.push(self.out.forward(&self.fc.forward(last)));
        out
    }

    pub fn num_levels(&self) -> usize {
        self.levels.len() + 1
    }
}

/// The head of the single-map backbones (Swin, VGG, ...): blurred stride-2 3×3 conv to 256
/// channels, flatten, FC to 256, FC to 1. `out_size` is the spatial size after the conv
/// (3 for 7×7 maps, 4 for 8×8 maps).
#[derive(Debug)]
pub struct SimpleD {
    conv: EqualConv2d,
    fc: EqualLinear,
    out: EqualLinear,
    out_size: i64,
}

impl SimpleD {
    pub fn new(vs: Path, in_ch: i64, out_ch: i64, out_size: i64) -> Self {
        Self {
            conv: lrelu_conv(&vs / "conv", in_ch, out_ch, 3, true),
            fc: EqualLinear::new(
                &vs / "fc",
                out_ch * out_size * out_size,
                HIDDEN,
                LinearConfig::lrelu(),
            ),
            out: EqualLinear::new(&vs / "out", HIDDEN, 1, LinearConfig::default()),
            out_size,
        }
    }

    /// `[B, in_ch, H, W]` → `[B, 1]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.conv.forward(x, 1.0);
        let (b, _, hh, ww) = h.size4().unwrap();
        assert!(
            hh == self.out_size && ww == self.out_size,
            "SimpleD built for out_size {} got a {hh}×{ww} map after its conv",
            self.out_size
        );
        let h = self.fc.forward(&h.flatten(1, -1));
        let y = self.out.forward(&h);
        debug_assert_eq!(y.size(), [b, 1]);
        y
    }
}

/// The head on a pooled vector: FC(in, 256) with lrelu, FC(256, 1).
#[derive(Debug)]
pub struct MlpD {
    fc: EqualLinear,
    out: EqualLinear,
}

impl MlpD {
    pub fn new(vs: Path, in_features: i64) -> Self {
        Self {
            fc: EqualLinear::new(&vs / "fc", in_features, HIDDEN, LinearConfig::lrelu()),
            out: EqualLinear::new(&vs / "out", HIDDEN, 1, LinearConfig::default()),
        }
    }

    /// `[B, in]` → `[B, 1]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.out.forward(&self.fc.forward(x))
    }
}

/// A head of any kind, reading a backbone's [`Features`].
#[derive(Debug)]
pub enum Head {
    /// Reads the first `levels − 1` maps and the pooled vector.
    MultiLevel(MultiLevelDViT),
    /// Reads the last map.
    Simple(SimpleD),
    /// Reads the pooled vector.
    Mlp(MlpD),
}

impl Head {
    /// The reference's head for a bank member (§2.2): CLIP and DINO get the multi-level head
    /// when `multi_level` (the `conv_multi_level` output) and MLPD on the pooled vector
    /// otherwise; Swin-T and VGG-16 get SimpleD on their 7×7 map.
    pub fn for_member(vs: Path, member: &str, multi_level: bool) -> Result<Self> {
        Ok(match (member, multi_level) {
            ("clip_vit_b32", true) => {
                Head::MultiLevel(MultiLevelDViT::new(vs, 3, 768, 512, 256, 1))
            }
            ("clip_vit_b32", false) => Head::Mlp(MlpD::new(vs, 512)),
            ("dino_vitb16", true) => Head::MultiLevel(MultiLevelDViT::new(vs, 3, 768, 768, 128, 2)),
            ("dino_vitb16", false) => Head::Mlp(MlpD::new(vs, 768)),
            ("swin_t", _) => Head::Simple(SimpleD::new(vs, 768, HIDDEN, 3)),
            ("vgg16", _) => Head::Simple(SimpleD::new(vs, 512, HIDDEN, 3)),
            (other, _) => bail!("no vision-aided head is defined for backbone '{other}'"),
        })
    }

    /// The head's logits: one tensor, or one per level for the multi-level head.
    pub fn forward(&self, f: &Features) -> Vec<Tensor> {
        match self {
            Head::MultiLevel(h) => {
                let n = h.num_levels() - 1;
                assert!(
                    f.maps.len() >= n,
                    "multi-level head needs {n} maps, the backbone gave {}",
                    f.maps.len()
                );
                h.forward(&f.maps[..n], &f.pooled)
            }
            Head::Simple(h) => {
                let map = f.maps.last().expect("SimpleD needs a spatial map");
                vec![h.forward(map)]
            }
            Head::Mlp(h) => vec![h.forward(&f.pooled)],
        }
    }

    /// Whether the head returns several levels (it then needs a `multilevel_*` loss).
    pub fn is_multilevel(&self) -> bool {
        matches!(self, Head::MultiLevel(_))
    }
}
