"""Forward plus input-gradient throughput of a frozen backbone in PyTorch, the reference for
examples/bench_backbone.rs: the same pipeline (x·0.5+0.5, area resize, the network's
normalisation, the network up to the outputs vagan computes) and one gradient of the sum of
all those outputs with respect to the images. Random weights: speed only.

.venv-fixtures/bin/python3 bench/reference_backbone.py NAME BATCH INPUT_RES STEPS WARMUP THREADS OUT.json

NAME (references pinned in scripts/fixtures/requirements.txt, built as scripts/fixtures/*.py do):
  efficientnet_lite0|1|2  efficientnet-lite-pytorch, extract_features
  clip_vit_b32            vision-aided-loss's vendored OpenAI CLIP VisionTransformer (224, patch 32,
                          768 wide, 12x12 heads, embed 512): tokens after blocks 4 and 8, and
                          ln_post(CLS) @ proj
  dino_vitb16             transformers ViTModel (768, 12 layers, 12 heads, patch 16, gelu, eps 1e-6):
                          final layernorm on the tokens after blocks 5 and 9, and on the last CLS
  swin_t                  timm swin_tiny_patch4_window7_224 (num_classes=0): forward_features
  vgg16                   torchvision vgg16().features
  vgg16_antialiased       antialiased_cnns.vgg16(filter_size=4).features
"""
import json
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import importlib.util  # noqa: E402
import os  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def efficientnet_lite(name):
    from efficientnet_lite_pytorch import EfficientNet

    model_name = name.replace("_", "-")
    net = EfficientNet.from_name(model_name).eval().requires_grad_(False)
    res = EfficientNet.get_image_size(model_name)

    def run(x):
        x = F.interpolate(x * 0.5 + 0.5, size=(res, res), mode="area")
        return [net.extract_features((x * 255.0 - 127.0) / 128.0)]

    return run


def frozen(net):
    return net.eval().requires_grad_(False)


def preprocess(x, res, mean, std):
    """vagan's pipeline in front of every network: [-1,1] -> [0,1], area resize, (x - mean) / std."""
    x = F.interpolate(x * 0.5 + 0.5, size=(res, res), mode="area")
    mean = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def patch_map(tokens, grid):
    """[B, 1 + N, C] -> [B, C, grid, grid] without the class token, as vagan returns its taps."""
    return tokens[:, 1:, :].transpose(1, 2).reshape(tokens.shape[0], -1, grid, grid)


def clip_vit_b32():
    # The package's __init__ imports the whole discriminator, so load the model file on its own.
    base = os.path.dirname(importlib.util.find_spec("vision_aided_loss").origin)
    spec = importlib.util.spec_from_file_location("vendored_clip_model", os.path.join(base, "CLIP", "clip", "model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    v = frozen(module.VisionTransformer(input_resolution=224, patch_size=32, width=768, layers=12, heads=12,
                                        output_dim=512))
    grid = 224 // 32

    def run(x):
        # VisionTransformer.forward split at the taps (vision-aided-loss's forward_custom).
        x = v.conv1(preprocess(x, 224, CLIP_MEAN, CLIP_STD))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = v.ln_pre(torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)).permute(1, 0, 2)
        outs = []
        for a, b in ((0, 4), (4, 8), (8, 12)):
            x = v.transformer.resblocks[a:b](x)
            if b < 12:  # raw (un-normed) tokens after blocks 4 and 8
                outs.append(patch_map(x.permute(1, 0, 2), grid))
        outs.append(v.ln_post(x[0]) @ v.proj)  # x is [L, B, C]: x[0] is the class token
        return outs

    return run


def dino_vitb16():
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    image_size=224, patch_size=16, hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=True)
    m = frozen(ViTModel(cfg, add_pooling_layer=False))
    grid = 224 // 16

    def run(x):
        # embeddings + encoder directly: ViTModel.forward would also norm every final token, while
        # vagan norms only the tapped tokens and the last class token (get_intermediate_layers).
        h = m.encoder(m.embeddings(preprocess(x, 224, CLIP_MEAN, IMAGENET_STD)), output_hidden_states=True)
        hs = h.hidden_states  # hs[i] is after i blocks
        return [patch_map(m.layernorm(hs[5]), grid), patch_map(m.layernorm(hs[9]), grid),
                m.layernorm(hs[12][:, 0, :])]

    return run


def swin_t():
    import timm

    net = frozen(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=0))

    def run(x):
        # forward_features: the final normed tokens, NHWC in timm >= 0.9; vagan's map is NCHW.
        return [net.forward_features(preprocess(x, 224, CLIP_MEAN, IMAGENET_STD)).permute(0, 3, 1, 2)]

    return run


def vgg16(antialiased):
    if antialiased:
        import antialiased_cnns

        features = antialiased_cnns.vgg16(pretrained=False, filter_size=4).features
    else:
        import torchvision

        features = torchvision.models.vgg16(weights=None).features
    features = frozen(features)

    def run(x):
        return [features(preprocess(x, 224, IMAGENET_MEAN, IMAGENET_STD))]

    return run


def build(name):
    if name.startswith("efficientnet_lite"):
        return efficientnet_lite(name)
    builders = {"clip_vit_b32": clip_vit_b32, "dino_vitb16": dino_vitb16, "swin_t": swin_t,
                "vgg16": lambda: vgg16(False), "vgg16_antialiased": lambda: vgg16(True)}
    if name not in builders:
        raise SystemExit(f"unknown backbone {name!r}: efficientnet_lite0|1|2, {', '.join(builders)}")
    return builders[name]()


def peak_rss_gb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / (1024 * 1024)
    return 0.0


def main():
    name, batch, res, steps, warmup, threads, out = sys.argv[1:8]
    batch, res, steps, warmup, threads = map(int, (batch, res, steps, warmup, threads))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    run = build(name)
    images = torch.rand(batch, 3, res, res) * 2 - 1

    def step():
        x = images.detach().requires_grad_(True)
        # One backward through every output vagan computes (taps and pooled vectors alike).
        (g,) = torch.autograd.grad(sum(o.sum() for o in run(x)), x)
        assert g is not None

    for _ in range(warmup):
        step()
    ms = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t0) * 1e3)
    s = sorted(ms)
    median = (s[(len(s) - 1) // 2] + s[len(s) // 2]) / 2
    result = {"impl": "pytorch", "backbone": name, "torch_version": torch.__version__, "threads": threads,
              "batch": batch, "input_res": res, "step_ms": ms, "median_step_ms": median,
              "img_per_s": batch * 1000 / median, "img_per_s_mean": batch * steps * 1000 / sum(ms),
              "peak_rss_gb": peak_rss_gb()}
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"pytorch {name}: {result['img_per_s']:.2f} img/s")


if __name__ == "__main__":
    main()
