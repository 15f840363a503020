//! Vision transformers: CLIP ViT-B/32 and DINO ViT-B/16, frozen, as vision-aided-loss taps them
//! (`conv_multi_level`).
//!
//! Both are the same pre-LN transformer: a patch-embedding convolution, a class token and learnt
//! positional embeddings, blocks `x + attn(norm1(x))`, `x + mlp(norm2(x))` with multi-head
//! self-attention (fused qkv) and a two-layer MLP, and a final LayerNorm. They differ only by
//! what the configuration says: CLIP has no patch-embedding bias, a LayerNorm before the blocks
//! (`ln_pre`), QuickGELU (`x·σ(1.702x)`), LayerNorm eps 1e-5, raw (un-normed) tapped tokens and a
//! projection of the normed class token; DINO has a bias, no `ln_pre`, exact GELU, eps 1e-6, and
//! the final LayerNorm applied to the tapped tokens too (`get_intermediate_layers`).
//!
//! Variable names (one scheme for both; [`convert_keys`] maps the usual checkpoint layouts):
//! `patch_embed.weight` `[width, 3, p, p]`, `patch_embed.bias` (DINO), `cls_token` `[width]`,
//! `pos_embed` `[1 + grid², width]`, `ln_pre.{weight,bias}` (CLIP),
//! `blocks.N.{norm1,norm2}.{weight,bias}`, `blocks.N.attn.qkv.{weight,bias}` `[3·width, width]`
//! (rows q, k, v), `blocks.N.attn.proj.{weight,bias}`, `blocks.N.mlp.{fc1,fc2}.{weight,bias}`,
//! `norm.{weight,bias}` (CLIP's `ln_post`), `proj` `[width, embed_dim]` (CLIP, used as `x @ proj`).
use super::common::{preprocess, LayerNorm, Linear, CLIP_MEAN, CLIP_STD, IMAGENET_STD};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use tch::nn::{Init, Path};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// CLIP's `x * sigmoid(1.702 x)`.
    QuickGelu,
    /// The exact (erf) GELU.
    Gelu,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ViTConfig {
    pub name: String,
    /// Images are area-resized to `resolution`×`resolution` before the network.
    pub resolution: i64,
    pub patch_size: i64,
    pub width: i64,
    pub layers: i64,
    pub heads: i64,
    pub mlp_dim: i64,
    pub activation: Activation,
    pub ln_eps: f64,
    /// Whether the patch-embedding convolution has a bias (DINO) or not (CLIP).
    pub patch_bias: bool,
    /// A LayerNorm (`ln_pre`) after the embeddings, before the blocks (CLIP).
    pub ln_pre: bool,
    /// Tokens are tapped after this many blocks (1-based: 4 = after the 4th block).
    pub taps: Vec<i64>,
    /// Whether the final LayerNorm is applied to the tapped tokens (DINO) or not (CLIP).
    pub norm_taps: bool,
    /// The projection of the normed class token (CLIP's `proj`), or none (DINO).
    pub embed_dim: Option<i64>,
    /// Normalisation of the [0, 1] image: `(x - mean) / std`.
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

impl ViTConfig {
    /// OpenAI CLIP ViT-B/32's image tower, tapped after blocks 4 and 8 (vision-aided-loss).
    pub fn clip_b32() -> Self {
        Self {
            name: "clip-vit-b32".to_string(),
            resolution: 224,
            patch_size: 32,
            width: 768,
            layers: 12,
            heads: 12,
            mlp_dim: 3072,
            activation: Activation::QuickGelu,
            ln_eps: 1e-5,
            patch_bias: false,
            ln_pre: true,
            taps: vec![4, 8],
            norm_taps: false,
            embed_dim: Some(512),
            mean: CLIP_MEAN,
            std: CLIP_STD,
        }
    }

    /// DINO ViT-B/16, tapped after blocks 5 and 9 (`get_intermediate_layers(n=8)[0]` and `[4]`).
    /// The normalisation mixes CLIP's mean with ImageNet's std, as vision-aided-loss does.
    pub fn dino_b16() -> Self {
        Self {
            name: "dino-vit-b16".to_string(),
            resolution: 224,
            patch_size: 16,
            width: 768,
            layers: 12,
            heads: 12,
            mlp_dim: 3072,
            activation: Activation::Gelu,
            ln_eps: 1e-6,
            patch_bias: true,
            ln_pre: false,
            taps: vec![5, 9],
            norm_taps: true,
            embed_dim: None,
            mean: CLIP_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// A tiny CLIP-style network for tests (as `scripts/fixtures/vit.py` builds it): 32×32
    /// images, patch 8 (4×4 grid), width 16, MLP 64, 3 blocks of 2 heads, embedding 8, taps
    /// after blocks 1 and 2.
    pub fn clip_tiny() -> Self {
        Self {
            name: "clip-vit-tiny".to_string(),
            resolution: 32,
            patch_size: 8,
            width: 16,
            layers: 3,
            heads: 2,
            mlp_dim: 64,
            taps: vec![1, 2],
            embed_dim: Some(8),
            ..Self::clip_b32()
        }
    }

    /// A tiny DINO-style network for tests: 24×24 images, patch 8 (3×3 grid), width 16, MLP 32,
    /// 3 blocks of 2 heads, taps after blocks 1 and 2.
    pub fn dino_tiny() -> Self {
        Self {
            name: "dino-vit-tiny".to_string(),
            resolution: 24,
            patch_size: 8,
            width: 16,
            layers: 3,
            heads: 2,
            mlp_dim: 32,
            taps: vec![1, 2],
            ..Self::dino_b16()
        }
    }

    pub fn grid(&self) -> i64 {
        self.resolution / self.patch_size
    }
}

#[derive(Debug)]
struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: i64,
    activation: Activation,
}

impl Block {
    fn new(vs: Path, cfg: &ViTConfig) -> Self {
        let w = cfg.width;
        let attn = &vs / "attn";
        let mlp = &vs / "mlp";
        Self {
            norm1: LayerNorm::new(&vs / "norm1", w, cfg.ln_eps),
            qkv: Linear::new(&attn / "qkv", w, 3 * w, true),
            proj: Linear::new(&attn / "proj", w, w, true),
            norm2: LayerNorm::new(&vs / "norm2", w, cfg.ln_eps),
            fc1: Linear::new(&mlp / "fc1", w, cfg.mlp_dim, true),
            fc2: Linear::new(&mlp / "fc2", cfg.mlp_dim, w, true),
            heads: cfg.heads,
            activation: cfg.activation,
        }
    }

    fn attention(&self, x: &Tensor) -> Tensor {
        let (b, n, w) = x.size3().unwrap();
        let d = w / self.heads;
        // [B, N, 3, H, D] -> [3, B, H, N, D]
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b, n, 3, self.heads, d])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        // libtorch's fused attention (softmax(q·kᵀ/√d)·v without materialising the scores on
        // the CPU's flash kernel); the same function as the explicit form.
        let attn = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        let attn = attn.transpose(1, 2).reshape([b, n, w]);
        self.proj.forward(&attn)
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x + self.attention(&self.norm1.forward(x));
        let h = self.fc1.forward(&self.norm2.forward(&x));
        let h = match self.activation {
            Activation::QuickGelu => &h * (&h * 1.702).sigmoid(),
            Activation::Gelu => h.gelu("none"),
        };
        x + self.fc2.forward(&h)
    }
}

#[derive(Debug)]
pub struct ViT {
    patch_weight: Tensor,
    patch_bias: Option<Tensor>,
    cls_token: Tensor,
    pos_embed: Tensor,
    ln_pre: Option<LayerNorm>,
    blocks: Vec<Block>,
    norm: LayerNorm,
    proj: Option<Tensor>,
    cfg: ViTConfig,
}

pub struct ViTOutput {
    /// The patch tokens after each of `cfg.taps` blocks (normed by the final LayerNorm when
    /// `cfg.norm_taps`), class token dropped, as `[B, width, grid, grid]`: token t is at
    /// (y, x) = (t / grid, t % grid). CLIP B/32: 768×7×7; DINO B/16: 768×14×14.
    pub features: Vec<Tensor>,
    /// The class token after the last block, normed, then projected when the configuration has
    /// a projection: CLIP's image embedding `[B, 512]`, DINO's `[B, 768]`. Also the pooled
    /// vector of the linear probe.
    pub pooled: Tensor,
}

impl ViTOutput {
    /// vision-aided-loss's `conv_multi_level` list: the tapped maps, then the pooled vector.
    pub fn levels(&self) -> Vec<Tensor> {
        let mut levels: Vec<Tensor> = self.features.iter().map(|t| t.shallow_clone()).collect();
        levels.push(self.pooled.shallow_clone());
        levels
    }
}

impl ViT {
    pub fn new(vs: Path, cfg: &ViTConfig) -> Self {
        let w = cfg.width;
        let p = cfg.patch_size;
        assert!(cfg.resolution % p == 0 && w % cfg.heads == 0);
        assert!(cfg.taps.iter().all(|&t| t >= 1 && t <= cfg.layers));
        let tokens = cfg.grid() * cfg.grid() + 1;
        let pe = &vs / "patch_embed";
        let patch_weight = pe.var(
            "weight",
            &[w, 3, p, p],
            Init::Randn {
                mean: 0.,
                stdev: (1.0 / (3 * p * p) as f64).sqrt(),
            },
        );
        let patch_bias = cfg
            .patch_bias
            .then(|| pe.var("bias", &[w], Init::Const(0.)));
        let small = Init::Randn {
            mean: 0.,
            stdev: 0.02,
        };
        let cls_token = vs.var("cls_token", &[w], small);
        let pos_embed = vs.var("pos_embed", &[tokens, w], small);
        let ln_pre = cfg
            .ln_pre
            .then(|| LayerNorm::new(&vs / "ln_pre", w, cfg.ln_eps));
        let blocks = (0..cfg.layers)
            .map(|i| Block::new(&vs / "blocks" / i, cfg))
            .collect();
        let norm = LayerNorm::new(&vs / "norm", w, cfg.ln_eps);
        let proj = cfg.embed_dim.map(|e| {
            vs.var(
                "proj",
                &[w, e],
                Init::Randn {
                    mean: 0.,
                    stdev: (w as f64).powf(-0.5),
                },
            )
        });
        Self {
            patch_weight,
            patch_bias,
            cls_token,
            pos_embed,
            ln_pre,
            blocks,
            norm,
            proj,
            cfg: cfg.clone(),
        }
    }

    pub fn config(&self) -> &ViTConfig {
        &self.cfg
    }

    /// Images in [-1, 1] (`[B, 1 or 3, H, W]`, any size; grey is repeated to RGB): to [0, 1],
    /// area-resized to the configured resolution (`F.interpolate(mode='area')`), normalised with
    /// the configured mean and std, then the network. Differentiable with respect to `images`.
    pub fn forward(&self, images: &Tensor) -> ViTOutput {
        let cfg = &self.cfg;
        let b = images.size()[0];
        let x = preprocess(images, cfg.resolution, cfg.mean, cfg.std);

        let p = cfg.patch_size;
        let x = x.conv2d(
            &self.patch_weight,
            self.patch_bias.as_ref(),
            [p, p],
            [0, 0],
            [1, 1],
            1,
        );
        let (_, width, g, _) = x.size4().unwrap();
        let x = x.flatten(2, 3).transpose(1, 2);
        let cls = self
            .cls_token
            .view([1, 1, width])
            .expand([b, 1, width], false);
        let x = Tensor::cat(&[cls, x], 1) + &self.pos_embed;
        let mut x = match &self.ln_pre {
            Some(ln) => ln.forward(&x),
            None => x,
        };

        let mut features = Vec::with_capacity(cfg.taps.len());
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x);
            let done = i as i64 + 1;
            for _ in cfg.taps.iter().filter(|&&t| t == done) {
                let tokens = x.narrow(1, 1, g * g);
                let tokens = if cfg.norm_taps {
                    self.norm.forward(&tokens)
                } else {
                    tokens
                };
                features.push(tokens.transpose(1, 2).reshape([b, width, g, g]));
            }
        }
        let cls = self.norm.forward(&x.select(1, 0));
        let pooled = match &self.proj {
            Some(proj) => cls.matmul(proj),
            None => cls,
        };
        ViTOutput { features, pooled }
    }
}

/// The key layouts of ViT checkpoints that [`convert_keys`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLayout {
    /// OpenAI CLIP's own state dict (`ViT-B-32.pt`): `visual.conv1.weight`,
    /// `visual.transformer.resblocks.N.attn.in_proj_weight`, ... Text-tower keys are dropped.
    OpenAiClip,
    /// Hugging Face transformers `CLIPModel` / `CLIPVisionModelWithProjection`:
    /// `vision_model.encoder.layers.N.self_attn.q_proj.weight`, `visual_projection.weight`, ...
    /// Text-tower keys, `logit_scale` and `position_ids` are dropped.
    HfClip,
    /// DINO's own checkpoints (`dino_vitbase16_pretrain.pth`): `blocks.N.attn.qkv.weight`, ...
    /// A `module.` or `backbone.` prefix is stripped; a classification `head.*` is dropped.
    Dino,
    /// Hugging Face transformers `ViTModel` (`facebook/dino-vitb16`), possibly with a `vit.`
    /// prefix: `encoder.layer.N.attention.attention.query.weight`, ... `pooler.*` and
    /// `classifier.*` are dropped.
    HfViT,
}

impl KeyLayout {
    /// Guesses the layout from the key names (any key decides, in this order: `visual.`,
    /// `vision_model.`, transformers ViT's `encoder.layer.`, DINO's `attn.qkv`). OpenAI CLIP's
    /// text tower also has `resblocks`, which is why the vision prefixes are looked for first.
    pub fn detect<'a>(keys: impl Iterator<Item = &'a String>) -> Option<Self> {
        let keys: Vec<&String> = keys.collect();
        let any = |f: &dyn Fn(&str) -> bool| keys.iter().any(|k| f(k));
        if any(&|k| k.starts_with("visual.")) {
            Some(Self::OpenAiClip)
        } else if any(&|k| k.starts_with("vision_model.")) {
            Some(Self::HfClip)
        } else if any(&|k| k.contains("encoder.layer.")) {
            Some(Self::HfViT)
        } else if any(&|k| k.contains("blocks.") && k.contains("attn.qkv.")) {
            Some(Self::Dino)
        } else {
            None
        }
    }
}

/// A block index and the rest of the key after `prefix` + "N.".
fn split_block<'a>(key: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = key.strip_prefix(prefix)?;
    let (n, tail) = rest.split_once('.')?;
    Some((n.parse().ok()?, tail))
}

/// Renames (and reshapes, concatenates or transposes where the layouts differ) the tensors of a
/// checkpoint to this module's variable names. Tensors of other parts of the checkpoint (a text
/// tower, a classifier) are dropped; keys this function does not know are kept under their own
/// name, so that [`crate::weights::load_into`] reports them. Separate q, k and v projections are
/// concatenated into `qkv` (all three must be present).
pub fn convert_keys(
    layout: KeyLayout,
    tensors: HashMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    // Per block: the q, k, v pieces of separate-projection layouts, by ("weight"|"bias", 0..3).
    let mut qkv: HashMap<(usize, String), [Option<Tensor>; 3]> = HashMap::new();
    let put = |out: &mut HashMap<String, Tensor>, name: String, t: Tensor| -> Result<()> {
        if out.insert(name.clone(), t).is_some() {
            bail!("two checkpoint tensors map to {name}");
        }
        Ok(())
    };
    for (key, t) in tensors {
        match layout {
            KeyLayout::OpenAiClip => {
                let Some(k) = key.strip_prefix("visual.") else {
                    continue; // the text tower, logit_scale, input_resolution, ...
                };
                let (name, t) = match k {
                    "conv1.weight" => ("patch_embed.weight".to_string(), t),
                    "class_embedding" => ("cls_token".to_string(), t),
                    "positional_embedding" => ("pos_embed".to_string(), t),
                    "ln_post.weight" => ("norm.weight".to_string(), t),
                    "ln_post.bias" => ("norm.bias".to_string(), t),
                    "proj" => ("proj".to_string(), t),
                    _ => match split_block(k, "transformer.resblocks.") {
                        Some((n, tail)) => {
                            let sub = match tail {
                                "attn.in_proj_weight" => "attn.qkv.weight".to_string(),
                                "attn.in_proj_bias" => "attn.qkv.bias".to_string(),
                                _ => {
                                    let (module, param) =
                                        tail.rsplit_once('.').unwrap_or((tail, ""));
                                    let m = match module {
                                        "attn.out_proj" => "attn.proj",
                                        "ln_1" => "norm1",
                                        "ln_2" => "norm2",
                                        "mlp.c_fc" => "mlp.fc1",
                                        "mlp.c_proj" => "mlp.fc2",
                                        other => other,
                                    };
                                    format!("{m}.{param}")
                                }
                            };
                            (format!("blocks.{n}.{sub}"), t)
                        }
                        None => (k.to_string(), t), // ln_pre.* keeps its name
                    },
                };
                put(&mut out, name, t)?;
            }
            KeyLayout::HfClip => {
                if key == "visual_projection.weight" {
                    put(&mut out, "proj".to_string(), t.tr().contiguous())?;
                    continue;
                }
                let Some(k) = key.strip_prefix("vision_model.") else {
                    continue; // text_model.*, text_projection, logit_scale
                };
                let name = match k {
                    "embeddings.position_ids" => continue,
                    "embeddings.class_embedding" => "cls_token".to_string(),
                    "embeddings.patch_embedding.weight" => "patch_embed.weight".to_string(),
                    "embeddings.position_embedding.weight" => "pos_embed".to_string(),
                    "pre_layrnorm.weight" => "ln_pre.weight".to_string(),
                    "pre_layrnorm.bias" => "ln_pre.bias".to_string(),
                    "post_layernorm.weight" => "norm.weight".to_string(),
                    "post_layernorm.bias" => "norm.bias".to_string(),
                    _ => match split_block(k, "encoder.layers.") {
                        Some((n, tail)) => {
                            let (module, param) = tail.rsplit_once('.').unwrap_or((tail, ""));
                            let part = match module {
                                "self_attn.q_proj" => Some(0),
                                "self_attn.k_proj" => Some(1),
                                "self_attn.v_proj" => Some(2),
                                _ => None,
                            };
                            if let Some(i) = part {
                                qkv.entry((n, param.to_string())).or_default()[i] = Some(t);
                                continue;
                            }
                            let m = match module {
                                "self_attn.out_proj" => "attn.proj",
                                "layer_norm1" => "norm1",
                                "layer_norm2" => "norm2",
                                other => other, // mlp.fc1, mlp.fc2
                            };
                            format!("blocks.{n}.{m}.{param}")
                        }
                        None => key.clone(),
                    },
                };
                put(&mut out, name, t)?;
            }
            KeyLayout::Dino => {
                let mut k = key.as_str();
                for prefix in ["module.", "backbone."] {
                    k = k.strip_prefix(prefix).unwrap_or(k);
                }
                if k.starts_with("head.") {
                    continue;
                }
                let (name, t) = match k {
                    "cls_token" => ("cls_token".to_string(), t.flatten(0, -1)),
                    "pos_embed" => {
                        let w = *t.size().last().context("pos_embed is a scalar")?;
                        ("pos_embed".to_string(), t.reshape([-1, w]))
                    }
                    "patch_embed.proj.weight" => ("patch_embed.weight".to_string(), t),
                    "patch_embed.proj.bias" => ("patch_embed.bias".to_string(), t),
                    _ => (k.to_string(), t), // blocks.N.* and norm.* are this layout's names
                };
                put(&mut out, name, t)?;
            }
            KeyLayout::HfViT => {
                let k = key.strip_prefix("vit.").unwrap_or(&key);
                if k.starts_with("pooler.") || k.starts_with("classifier.") {
                    continue;
                }
                let (name, t) = match k {
                    "embeddings.cls_token" => ("cls_token".to_string(), t.flatten(0, -1)),
                    "embeddings.position_embeddings" => {
                        let w = *t.size().last().context("position_embeddings is a scalar")?;
                        ("pos_embed".to_string(), t.reshape([-1, w]))
                    }
                    "embeddings.patch_embeddings.projection.weight" => {
                        ("patch_embed.weight".to_string(), t)
                    }
                    "embeddings.patch_embeddings.projection.bias" => {
                        ("patch_embed.bias".to_string(), t)
                    }
                    "layernorm.weight" => ("norm.weight".to_string(), t),
                    "layernorm.bias" => ("norm.bias".to_string(), t),
                    _ => match split_block(k, "encoder.layer.") {
                        Some((n, tail)) => {
                            let (module, param) = tail.rsplit_once('.').unwrap_or((tail, ""));
                            let part = match module {
                                "attention.attention.query" => Some(0),
                                "attention.attention.key" => Some(1),
                                "attention.attention.value" => Some(2),
                                _ => None,
                            };
                            if let Some(i) = part {
                                qkv.entry((n, param.to_string())).or_default()[i] = Some(t);
                                continue;
                            }
                            let m = match module {
                                "attention.output.dense" => "attn.proj",
                                "layernorm_before" => "norm1",
                                "layernorm_after" => "norm2",
                                "intermediate.dense" => "mlp.fc1",
                                "output.dense" => "mlp.fc2",
                                other => other,
                            };
                            (format!("blocks.{n}.{m}.{param}"), t)
                        }
                        None => (key.clone(), t),
                    },
                };
                put(&mut out, name, t)?;
            }
        }
    }
    for ((n, param), parts) in qkv {
        let [Some(q), Some(k), Some(v)] = parts else {
            bail!("block {n}: the q, k and v {param} are not all in the checkpoint");
        };
        let fused = Tensor::cat(&[q, k, v], 0);
        put(&mut out, format!("blocks.{n}.attn.qkv.{param}"), fused)?;
    }
    Ok(out)
}
