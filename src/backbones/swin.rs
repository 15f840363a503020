//! Swin Transformer (Swin-T for the vision-aided `swin` backbone, MoBY self-supervised weights),
//! frozen, with the variable names of timm ≥ 0.9's `SwinTransformer`:
//! `patch_embed.{proj,norm}`, `layers.I.blocks.J.{norm1, attn.qkv, attn.proj,
//! attn.relative_position_bias_table, norm2, mlp.fc1, mlp.fc2}`, `layers.I.downsample.{norm,
//! reduction}` (I ≥ 1: timm merges patches at the *start* of a stage), `norm`.
//! [`convert_checkpoint`] maps the other layouts onto these names: the original Swin/MoBY layout
//! (patch merging at the end of stage I, i.e. `layers.I.downsample` for I < last; MoBY prefixes
//! the online encoder with `encoder.`) and Hugging Face transformers' `SwinModel`.
//!
//! The blocks alternate regular and shifted windows (shift = window/2, cyclic roll, the
//! cross-region pairs masked with −100 as in the reference code). A stage whose resolution is not
//! larger than the window uses one window of that resolution and no shift (timm's and the
//! original's rule; Swin-T's last stage at 224). Relative position bias per head from a
//! `(2w−1)²` table; LayerNorm eps 1e-5; GELU (erf); no absolute position embedding; dropout and
//! drop-path are inactive at inference. The resolution must divide into whole windows at every
//! stage (true for Swin-T at 224); the padded case is not implemented.
use super::common::{preprocess, LayerNorm, Linear, CLIP_MEAN, IMAGENET_STD};
use std::collections::HashMap;
use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct SwinConfig {
    pub name: String,
    /// Images are area-resized to `resolution`×`resolution` before the network.
    pub resolution: i64,
    pub patch_size: i64,
    pub embed_dim: i64,
    pub depths: Vec<i64>,
    pub num_heads: Vec<i64>,
    pub window_size: i64,
    pub mlp_ratio: i64,
}

impl SwinConfig {
    /// Swin-T (`swin_tiny_patch4_window7_224`).
    pub fn swin_t() -> Self {
        Self {
            name: "swin-t".to_string(),
            resolution: 224,
            patch_size: 4,
            embed_dim: 96,
            depths: vec![2, 2, 6, 2],
            num_heads: vec![3, 6, 12, 24],
            window_size: 7,
            mlp_ratio: 4,
        }
    }

    /// A tiny network for tests (as `scripts/fixtures/swin.py` builds it): embed 16, depths
    /// [2, 2], heads [1, 2], window 4 at 32×32 (8×8 tokens: shifted, masked windows in stage 0;
    /// stage 1 at 4×4 takes the one-window, no-shift rule).
    pub fn tiny() -> Self {
        Self {
            name: "swin-tiny-test".to_string(),
            resolution: 32,
            patch_size: 4,
            embed_dim: 16,
            depths: vec![2, 2],
            num_heads: vec![1, 2],
            window_size: 4,
            mlp_ratio: 4,
        }
    }

    /// Channels of the output tokens (768 for Swin-T).
    pub fn out_channels(&self) -> i64 {
        self.embed_dim << (self.depths.len() as i64 - 1)
    }
}

const LN_EPS: f64 = 1e-5;

#[derive(Debug)]
struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    bias_table: Tensor,
    /// `[N·N]` indices into `bias_table` (N = window²).
    bias_index: Tensor,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: i64,
    window: i64,
    shift: i64,
    /// `[nW, N, N]` with 0 or −100 for shifted blocks.
    mask: Option<Tensor>,
}

/// `[B, H, W, C]` → `[B·nW, w², C]`, windows in row-major order.
fn partition(x: &Tensor, w: i64) -> Tensor {
    let (b, h, wd, c) = x.size4().unwrap();
    x.view([b, h / w, w, wd / w, w, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([-1, w * w, c])
}

/// The inverse of [`partition`].
fn unpartition(x: &Tensor, w: i64, b: i64, h: i64, wd: i64) -> Tensor {
    let c = *x.size().last().unwrap();
    x.view([b, h / w, wd / w, w, w, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, h, wd, c])
}

/// Index of each (query, key) pair of a w×w window into the `(2w−1)²` bias table.
fn relative_position_index(w: i64) -> Vec<i64> {
    let n = w * w;
    let mut idx = Vec::with_capacity((n * n) as usize);
    for i in 0..n {
        for j in 0..n {
            let dy = i / w - j / w + w - 1;
            let dx = i % w - j % w + w - 1;
            idx.push(dy * (2 * w - 1) + dx);
        }
    }
    idx
}

/// The shifted-window attention mask `[nW, N, N]` for an `h`×`w` token grid.
fn shift_mask(h: i64, wd: i64, window: i64, shift: i64) -> Tensor {
    let region = |i: i64, size: i64| {
        if i < size - window {
            0
        } else if i < size - shift {
            1
        } else {
            2
        }
    };
    let mut ids = Vec::with_capacity((h * wd) as usize);
    for y in 0..h {
        for x in 0..wd {
            ids.push((region(y, h) * 3 + region(x, wd)) as f32);
        }
    }
    let img = Tensor::from_slice(&ids).view([1, h, wd, 1]);
    let m = partition(&img, window).squeeze_dim(-1); // [nW, N]
    let diff = m.unsqueeze(1) - m.unsqueeze(2);
    diff.ne(0.0).to_kind(Kind::Float) * -100.0
}

impl Block {
    fn new(vs: Path, dim: i64, heads: i64, res: i64, cfg: &SwinConfig, shifted: bool) -> Self {
        let (window, shift) = if res <= cfg.window_size {
            (res, 0)
        } else {
            (
                cfg.window_size,
                if shifted { cfg.window_size / 2 } else { 0 },
            )
        };
        assert!(
            res % window == 0,
            "swin: a {res}×{res} token grid does not divide into {window}×{window} windows"
        );
        let attn = &vs / "attn";
        let table_len = (2 * window - 1) * (2 * window - 1);
        let bias_table = attn.var(
            "relative_position_bias_table",
            &[table_len, heads],
            Init::Randn {
                mean: 0.,
                stdev: 0.02,
            },
        );
        let hidden = dim * cfg.mlp_ratio;
        let mlp = &vs / "mlp";
        Self {
            norm1: LayerNorm::new(&vs / "norm1", dim, LN_EPS),
            qkv: Linear::new(&attn / "qkv", dim, 3 * dim, true),
            proj: Linear::new(&attn / "proj", dim, dim, true),
            bias_index: Tensor::from_slice(&relative_position_index(window))
                .to_device(bias_table.device()),
            bias_table,
            norm2: LayerNorm::new(&vs / "norm2", dim, LN_EPS),
            fc1: Linear::new(&mlp / "fc1", dim, hidden, true),
            fc2: Linear::new(&mlp / "fc2", hidden, dim, true),
            heads,
            window,
            shift,
            mask: (shift > 0).then(|| shift_mask(res, res, window, shift).to_device(vs.device())),
        }
    }

    fn attention(&self, x: &Tensor) -> Tensor {
        let (bw, n, c) = x.size3().unwrap();
        let hd = c / self.heads;
        let qkv = self
            .qkv
            .forward(x)
            .view([bw, n, 3, self.heads, hd])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let bias = self
            .bias_table
            .index_select(0, &self.bias_index)
            .view([n, n, self.heads])
            .permute([2, 0, 1])
            .unsqueeze(0);
        // The relative-position bias (plus the shifted windows' mask, per window) as the additive
        // mask of libtorch's fused attention: softmax(q·kᵀ/√d + mask)·v, as timm computes it.
        let mask = match &self.mask {
            Some(m) => {
                let nw = m.size()[0];
                (bias + m.to_kind(q.kind()).unsqueeze(1)).repeat([bw / nw, 1, 1, 1])
            }
            None => bias,
        };
        let out =
            Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, false)
                .transpose(1, 2)
                .reshape([bw, n, c]);
        self.proj.forward(&out)
    }

    /// `[B, H, W, C]` in and out.
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, h, w, _) = x.size4().unwrap();
        let mut y = self.norm1.forward(x);
        if self.shift > 0 {
            y = y.roll([-self.shift, -self.shift], [1, 2]);
        }
        let y = self.attention(&partition(&y, self.window));
        let mut y = unpartition(&y, self.window, b, h, w);
        if self.shift > 0 {
            y = y.roll([self.shift, self.shift], [1, 2]);
        }
        let x = x + y;
        let y = self
            .fc2
            .forward(&self.fc1.forward(&self.norm2.forward(&x)).gelu("none"));
        x + y
    }
}

#[derive(Debug)]
struct PatchMerging {
    norm: LayerNorm,
    reduction: Linear,
}

impl PatchMerging {
    /// `[B, H, W, C]` → `[B, H/2, W/2, 2C]`; the 2×2 neighbours are concatenated in the order
    /// (0,0), (1,0), (0,1), (1,1) as (row, column) offsets, as timm, the original and HF do.
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, h, w, c) = x.size4().unwrap();
        let x = x
            .view([b, h / 2, 2, w / 2, 2, c])
            .permute([0, 1, 3, 4, 2, 5])
            .reshape([b, h / 2, w / 2, 4 * c]);
        self.reduction.forward(&self.norm.forward(&x))
    }
}

#[derive(Debug)]
struct Stage {
    downsample: Option<PatchMerging>,
    blocks: Vec<Block>,
}

#[derive(Debug)]
pub struct Swin {
    proj_weight: Tensor,
    proj_bias: Tensor,
    patch_norm: LayerNorm,
    stages: Vec<Stage>,
    norm: LayerNorm,
    resolution: i64,
    patch_size: i64,
}

pub struct SwinOutput {
    /// The final normed tokens as a map, channels first, tokens row-major: `[N, 768, 7, 7]`.
    pub map: Tensor,
    /// `[N, 768]`, the mean over the tokens.
    pub pooled: Tensor,
}

impl Swin {
    pub fn new(vs: Path, cfg: &SwinConfig) -> Self {
        assert_eq!(cfg.depths.len(), cfg.num_heads.len());
        let pe = &vs / "patch_embed";
        let p = cfg.patch_size;
        let c0 = cfg.embed_dim;
        let fan_in = (3 * p * p) as f64;
        let bound = 1.0 / fan_in.sqrt();
        let proj = &pe / "proj";
        let proj_weight = proj.var(
            "weight",
            &[c0, 3, p, p],
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        );
        let proj_bias = proj.var("bias", &[c0], Init::Const(0.));
        let patch_norm = LayerNorm::new(&pe / "norm", c0, LN_EPS);
        let mut res = cfg.resolution / p;
        let mut dim = c0;
        let mut stages = Vec::new();
        let layers = &vs / "layers";
        for (i, (&depth, &heads)) in cfg.depths.iter().zip(&cfg.num_heads).enumerate() {
            let sp = &layers / i;
            let downsample = (i > 0).then(|| {
                let d = &sp / "downsample";
                let m = PatchMerging {
                    norm: LayerNorm::new(&d / "norm", 4 * dim, LN_EPS),
                    reduction: Linear::new(&d / "reduction", 4 * dim, 2 * dim, false),
                };
                dim *= 2;
                res /= 2;
                m
            });
            let blocks = (0..depth)
                .map(|j| Block::new(&sp / "blocks" / j, dim, heads, res, cfg, j % 2 == 1))
                .collect();
            stages.push(Stage { downsample, blocks });
        }
        Self {
            proj_weight,
            proj_bias,
            patch_norm,
            stages,
            norm: LayerNorm::new(&vs / "norm", dim, LN_EPS),
            resolution: cfg.resolution,
            patch_size: p,
        }
    }

    /// Images in [-1, 1] (`[N, 1 or 3, H, W]`, any size; grey is repeated to RGB): to [0, 1],
    /// area-resized to the configured resolution, normalised with the CLIP mean and the ImageNet
    /// std (the vision-aided reference's mixed normalisation), then the network.
    /// Differentiable with respect to `images`.
    pub fn forward(&self, images: &Tensor) -> SwinOutput {
        let x = preprocess(images, self.resolution, CLIP_MEAN, IMAGENET_STD);
        let p = self.patch_size;
        let x = x
            .conv2d(
                &self.proj_weight,
                Some(&self.proj_bias),
                [p, p],
                [0, 0],
                [1, 1],
                1,
            )
            .permute([0, 2, 3, 1]);
        let mut x = self.patch_norm.forward(&x);
        for stage in &self.stages {
            if let Some(ds) = &stage.downsample {
                x = ds.forward(&x);
            }
            for block in &stage.blocks {
                x = block.forward(&x);
            }
        }
        let x = self.norm.forward(&x);
        let pooled = x.mean_dim(&[1i64, 2][..], false, None::<Kind>);
        SwinOutput {
            map: x.permute([0, 3, 1, 2]).contiguous(),
            pooled,
        }
    }
}

/// Keys of a converted checkpoint that have no variable here: the classifier (`head.*`), the
/// recomputed buffers (`relative_position_index`, `attn_mask`).
pub fn is_unused_key(name: &str) -> bool {
    name.starts_with("head.")
        || name.ends_with("relative_position_index")
        || name.ends_with("attn_mask")
}

/// Maps a Swin checkpoint's tensors onto this module's variable names (timm ≥ 0.9 layout):
///
/// - Hugging Face `SwinModel` (any key containing `embeddings.patch_embeddings`; an optional
///   `swin.` prefix): renamed, `query/key/value` concatenated into `qkv`, the patch merging at the
///   end of stage I moved to the start of stage I+1; `classifier.*`, `pooler.*`, `mask_token`
///   and the index buffers are dropped;
/// - MoBY (keys `[model.]encoder.*`; the momentum encoder `encoder_k.*`, projector and predictor
///   are dropped) and the original Swin layout (`layers.0.downsample.*` present): the prefix is
///   stripped and the patch merging moved from the end of stage I to the start of stage I+1;
/// - timm ≥ 0.9: unchanged.
///
/// Then load with `weights::load_into(vs, &converted, origin, swin::is_unused_key)`.
pub fn convert_checkpoint(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    let strip = |k: &str, prefixes: &[&str]| -> String {
        let mut k = k;
        for p in prefixes {
            k = k.strip_prefix(p).unwrap_or(k);
        }
        k.to_string()
    };
    if tensors
        .keys()
        .any(|k| k.contains("embeddings.patch_embeddings"))
    {
        return convert_hf(
            tensors
                .into_iter()
                .map(|(k, v)| (strip(&k, &["model.", "swin."]), v))
                .collect(),
        );
    }
    let mut tensors: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, v)| (strip(&k, &["model.", "state_dict."]), v))
        .collect();
    if tensors.keys().any(|k| k.starts_with("encoder.")) {
        tensors = tensors
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("encoder.").map(|s| (s.to_string(), v)))
            .collect();
    }
    let old_layout = tensors.contains_key("layers.0.downsample.reduction.weight");
    tensors
        .into_iter()
        .map(|(k, v)| {
            let k = if old_layout { shift_downsample(&k) } else { k };
            (k, v)
        })
        .collect()
}

/// `layers.I.downsample.*` → `layers.{I+1}.downsample.*`; other keys unchanged.
fn shift_downsample(key: &str) -> String {
    let Some(rest) = key.strip_prefix("layers.") else {
        return key.to_string();
    };
    let Some((i, tail)) = rest.split_once('.') else {
        return key.to_string();
    };
    match (i.parse::<usize>(), tail.starts_with("downsample.")) {
        (Ok(i), true) => format!("layers.{}.{tail}", i + 1),
        _ => key.to_string(),
    }
}

fn convert_hf(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    let mut qkv: HashMap<String, [Option<Tensor>; 3]> = HashMap::new();
    for (k, v) in tensors {
        if k.starts_with("classifier.")
            || k.starts_with("pooler.")
            || k.ends_with("mask_token")
            || k.ends_with("relative_position_index")
        {
            continue;
        }
        let name = if let Some(rest) = k.strip_prefix("embeddings.patch_embeddings.projection.") {
            format!("patch_embed.proj.{rest}")
        } else if let Some(rest) = k.strip_prefix("embeddings.norm.") {
            format!("patch_embed.norm.{rest}")
        } else if let Some(rest) = k.strip_prefix("layernorm.") {
            format!("norm.{rest}")
        } else if let Some(rest) = k.strip_prefix("encoder.layers.") {
            let (i, tail) = rest.split_once('.').unwrap_or((rest, ""));
            if let Some(ds) = tail.strip_prefix("downsample.") {
                let i: usize = i.parse().unwrap_or(0);
                format!("layers.{}.downsample.{ds}", i + 1)
            } else if let Some(b) = tail.strip_prefix("blocks.") {
                let (j, t) = b.split_once('.').unwrap_or((b, ""));
                let prefix = format!("layers.{i}.blocks.{j}.");
                let qkv_slot = [
                    ("attention.self.query.", 0),
                    ("attention.self.key.", 1),
                    ("attention.self.value.", 2),
                ]
                .iter()
                .find_map(|(p, s)| t.strip_prefix(p).map(|param| (*s, param)));
                if let Some((slot, param)) = qkv_slot {
                    qkv.entry(format!("{prefix}attn.qkv.{param}"))
                        .or_insert([None, None, None])[slot] = Some(v);
                    continue;
                }
                let renames = [
                    ("layernorm_before.", "norm1."),
                    (
                        "attention.self.relative_position_bias_table",
                        "attn.relative_position_bias_table",
                    ),
                    ("attention.output.dense.", "attn.proj."),
                    ("layernorm_after.", "norm2."),
                    ("intermediate.dense.", "mlp.fc1."),
                    ("output.dense.", "mlp.fc2."),
                ];
                match renames
                    .iter()
                    .find_map(|(from, to)| t.strip_prefix(from).map(|r| format!("{to}{r}")))
                {
                    Some(t) => format!("{prefix}{t}"),
                    None => k.clone(),
                }
            } else {
                k.clone()
            }
        } else {
            k.clone()
        };
        out.insert(name, v);
    }
    for (name, parts) in qkv {
        match parts {
            [Some(q), Some(k), Some(v)] => {
                out.insert(name, Tensor::cat(&[q, k, v], 0));
            }
            // Incomplete: keep the name so that loading reports a missing tensor.
            _ => continue,
        }
    }
    out
}
