#!/usr/bin/env python3
"""PyTorch reference of vagan's StyleGAN2 training step, for side-by-side benchmarking.

Written from the Rust sources (src/nets/*.rs, src/augment/diffaugment.rs, src/train/*.rs,
src/data/mod.rs), op for op where it matters for cost: same layers, same parameter names and
shapes, same DiffAugment, same loss/regularisation schedule, same optimiser and EMA. The
random streams are seeded the same way (per-step `derive_seed`, SplitMix64 data order), but
no bit-exact match with the Rust run is claimed.

Example:
  .venv/bin/python3 bench/reference_train.py --data data/fashion-mnist-1k-32.vds \
      --batch 32 --cbase 4096 --cmax 128 --z-dim 128 --w-dim 128 --map 2 --threads 2 \
      --steps 32 --warmup-steps 4 --json /tmp/ref.json
"""
import argparse
import copy
import json
import math
import os
import statistics
import struct
import sys
import time
import warnings

# The venv has no numpy; torch warns about it at import, which is irrelevant here.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SQRT_2 = math.sqrt(2.0)
SQRT_HALF = math.sqrt(0.5)
G_REG_INTERVAL = 4
D_REG_INTERVAL = 16
MASK64 = (1 << 64) - 1

# `native` (the default) is F.leaky_relu, what a PyTorch user writes; `lrb` is
# aten::leaky_relu_backward(x, x, 0.2), vagan's formulation (tch's `leaky_relu` has a fixed 0.01
# slope); `max` is maximum(x, 0.2x). All three are the same function with the same derivatives.
LRELU_MODE = "native"


# ----------------------------------------------------------------------------------------------
# Seeds and data order (src/util.rs, src/data/mod.rs)


class SplitMix64:
    def __init__(self, seed):
        self.s = seed & MASK64

    def next_u64(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n):
        zone = MASK64 - MASK64 % n
        while True:
            v = self.next_u64()
            if v < zone:
                return v % n

    def permutation(self, n):
        p = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.below(i + 1)
            p[i], p[j] = p[j], p[i]
        return p


def derive_seed(seed, counter):
    return SplitMix64(seed ^ ((counter * 0xD1B54A32D192ED03) & MASK64)).next_u64()


class Dataset:
    """A `VAGANDS1` file: magic, u64 LE header length, JSON header, uint8 NCHW, optional i64 labels."""

    def __init__(self, path):
        with open(path, "rb") as f:
            head = f.read(16)
            if len(head) < 16 or head[:8] != b"VAGANDS1":
                sys.exit(f"{path} is not a vagan dataset file")
            (hlen,) = struct.unpack("<Q", head[8:])
            self.header = json.loads(f.read(hlen))
        h = self.header
        self.count, self.channels, self.resolution = h["count"], h["channels"], h["resolution"]
        offset = 16 + hlen
        pixels = self.count * self.channels * self.resolution**2
        size = os.path.getsize(path)
        expected = offset + pixels + (8 * self.count if h.get("has_labels") else 0)
        if size != expected:
            sys.exit(f"{path}: file is {size} bytes, its header promises {expected}")
        # Memory-mapped like the Rust side; only each minibatch is copied.
        raw = torch.from_file(path, shared=False, size=size, dtype=torch.uint8)
        self.images = raw[offset : offset + pixels].view(self.count, self.channels, self.resolution, self.resolution)

    def batch(self, items, device):
        idx = torch.tensor([i for i, _ in items], dtype=torch.int64)
        x = self.images.index_select(0, idx).to(device).float() / 127.5 - 1.0
        flip = [f for _, f in items]
        if any(flip):
            mask = torch.tensor(flip, device=device).reshape(-1, 1, 1, 1)
            x = torch.where(mask, x.flip(3), x)
        return x


class Sampler:
    """Endless epochs of SplitMix64 permutations; image k is a function of (seed, k)."""

    def __init__(self, n, xflip, seed):
        self.n, self.xflip, self.seed, self.epoch = n, xflip, seed, None

    def take(self, start, count):
        vn = 2 * self.n if self.xflip else self.n
        out = []
        for k in range(start, start + count):
            e = k // vn
            if self.epoch is None or self.epoch[0] != e:
                self.epoch = (e, SplitMix64(derive_seed(self.seed, e)).permutation(vn))
            v = self.epoch[1][k % vn]
            out.append((v % self.n, v >= self.n))
        return out


# ----------------------------------------------------------------------------------------------
# Layers (src/nets/layers.rs)


def lrelu(x):
    if LRELU_MODE == "native":
        return F.leaky_relu(x, 0.2) * SQRT_2
    if LRELU_MODE == "lrb":
        return torch.ops.aten.leaky_relu_backward(x, x, 0.2, False) * SQRT_2
    return torch.maximum(x, x * 0.2) * SQRT_2


_BLUR = {}


def blur_filter(device):
    """[1,3,3,1] outer product, normalised to sum 1 (4x4)."""
    if device not in _BLUR:
        f = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device)
        f2 = torch.outer(f, f)
        _BLUR[device] = f2 / f2.sum()
    return _BLUR[device]


def upfirdn2d(x, f, up, down, pad, gain):
    """Zero-insertion upsampling, pad (x0, x1, y0, y1; negative crops), depthwise FIR, subsample."""
    n, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, pad)
    fh, fw = f.shape
    weight = (f * gain).to(x.dtype).reshape(1, 1, fh, fw).expand(c, 1, fh, fw)
    return F.conv2d(x, weight, None, stride=down, groups=c)


def upsample2d(x, f):
    return upfirdn2d(x, f, 2, 1, [2, 1, 2, 1], 4.0)


class EqualLinear(nn.Module):
    def __init__(self, in_f, out_f, bias=True, bias_init=0.0, lr_mult=1.0, activate=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_f, in_f) / lr_mult)
        self.bias = nn.Parameter(torch.full([out_f], bias_init / lr_mult)) if bias else None
        self.weight_gain = lr_mult / math.sqrt(in_f)
        self.bias_gain = lr_mult
        self.activate = activate

    def forward(self, x):
        b = self.bias * self.bias_gain if self.bias is not None else None
        y = F.linear(x, self.weight * self.weight_gain, b)
        return lrelu(y) if self.activate else y


class EqualConv2d(nn.Module):
    """The discriminator's conv: equalised lr, optional blurred 2x down-sampling, lrelu."""

    def __init__(self, in_ch, out_ch, kernel, bias=True, down=False, activate=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.kernel, self.down, self.activate = kernel, down, activate

    def forward(self, x, gain=1.0):
        w = self.weight * self.weight_gain
        k = self.kernel
        f = blur_filter(x.device)
        if not self.down:
            y = F.conv2d(x, w, self.bias, padding=k // 2)
        elif k == 1:
            # As Rust: blur + subsample first, then the 1x1 conv.
            y = F.conv2d(upfirdn2d(x, f, 1, 2, [1, 1, 1, 1], 1.0), w, self.bias)
        else:
            p = (4 - 2 + k - 1) // 2  # H -> H+1 -> H/2 with the stride-2 conv
            y = F.conv2d(upfirdn2d(x, f, 1, 1, [p, p, p, p], 1.0), w, self.bias, stride=2)
        if self.activate:
            y = lrelu(y)
        return y * gain if gain != 1.0 else y


class ModulatedConv2d(nn.Module):
    """Modulation on the activations, one shared conv, demodulation on the output (as Rust)."""

    def __init__(self, w_dim, in_ch, out_ch, kernel, up, demodulate):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.kernel, self.up, self.demodulate = kernel, up, demodulate
        self.style_gain = 1.0 if demodulate else 1.0 / math.sqrt(in_ch * kernel * kernel)

    def forward(self, x, w):
        styles = self.affine(w) * self.style_gain  # [N, in]
        x = x * styles.unsqueeze(-1).unsqueeze(-1)
        k = self.kernel
        if self.up:
            # Stride-2 transposed conv with the flipped kernel = zero insertion + same conv;
            # the blur (pad 1, gain 4) completes the FIR up-sampling.
            wt = self.weight.flip([2, 3]).transpose(0, 1)
            y = F.conv_transpose2d(x, wt, None, stride=2)
            y = upfirdn2d(y, blur_filter(x.device), 1, 1, [1, 1, 1, 1], 4.0)
        else:
            y = F.conv2d(x, self.weight, None, padding=k // 2)
        if self.demodulate:
            wsq = self.weight.square().sum(dim=[2, 3])  # [out, in]
            d = (styles.square().matmul(wsq.transpose(0, 1)) + 1e-8).rsqrt()  # [N, out]
            y = y * d.unsqueeze(-1).unsqueeze(-1)
        return y


# ----------------------------------------------------------------------------------------------
# Generator (src/nets/generator.rs)


def channels(cbase, cmax, res):
    return min(cbase // res, cmax)


class Mapping(nn.Module):
    def __init__(self, z_dim, w_dim, layers):
        super().__init__()
        for i in range(layers):
            self.add_module(f"fc{i}", EqualLinear(z_dim if i == 0 else w_dim, w_dim, lr_mult=0.01, activate=True))
        self.layers = layers
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z):
        x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.layers):
            x = getattr(self, f"fc{i}")(x)
        return x


class SynthesisLayer(nn.Module):
    def __init__(self, w_dim, in_ch, out_ch, res, up):
        super().__init__()
        self.conv = ModulatedConv2d(w_dim, in_ch, out_ch, 3, up, True)
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(res, res))
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x, w, noise_mode):
        y = self.conv(x, w)
        n, _, h, wd = y.shape
        if noise_mode == "random":
            y = y + torch.randn(n, 1, h, wd, dtype=y.dtype, device=y.device) * self.noise_strength
        elif noise_mode == "const":
            y = y + self.noise_const * self.noise_strength
        return lrelu(y + self.bias.reshape(1, -1, 1, 1))


class ToRgb(nn.Module):
    def __init__(self, w_dim, in_ch, img_ch):
        super().__init__()
        self.conv = ModulatedConv2d(w_dim, in_ch, img_ch, 1, False, False)
        self.bias = nn.Parameter(torch.zeros(img_ch))

    def forward(self, x, w):
        return self.conv(x, w) + self.bias.reshape(1, -1, 1, 1)


class SynthesisBlock(nn.Module):
    def __init__(self, w_dim, in_ch, out_ch, img_ch, res):
        super().__init__()
        self.conv0 = SynthesisLayer(w_dim, in_ch, out_ch, res, True) if res > 4 else None
        self.conv1 = SynthesisLayer(w_dim, out_ch, out_ch, res, False)
        self.torgb = ToRgb(w_dim, out_ch, img_ch)


class Synthesis(nn.Module):
    def __init__(self, w_dim, resolution, img_ch, cbase, cmax):
        super().__init__()
        self.const = nn.Parameter(torch.randn(channels(cbase, cmax, 4), 4, 4))
        self.resolutions = []
        r = 4
        while r <= resolution:
            self.resolutions.append(r)
            self.add_module(
                f"b{r}",
                SynthesisBlock(w_dim, channels(cbase, cmax, r // 2), channels(cbase, cmax, r), img_ch, r),
            )
            r *= 2

    def forward(self, ws, noise_mode):
        x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        img = None
        w_idx = 0
        f = blur_filter(ws.device)
        for r in self.resolutions:
            block = getattr(self, f"b{r}")
            idx = w_idx
            if block.conv0 is not None:
                x = block.conv0(x, ws[:, idx], noise_mode)
                idx += 1
            x = block.conv1(x, ws[:, idx], noise_mode)
            rgb = block.torgb(x, ws[:, idx + 1])
            img = rgb if img is None else upsample2d(img, f) + rgb
            w_idx = idx + 1
        return img


class Generator(nn.Module):
    def __init__(self, z_dim, w_dim, map_layers, resolution, img_ch, cbase, cmax):
        super().__init__()
        self.z_dim = z_dim
        self.num_ws = 2 * int(round(math.log2(resolution) - 1))
        self.mapping = Mapping(z_dim, w_dim, map_layers)
        self.synthesis = Synthesis(w_dim, resolution, img_ch, cbase, cmax)

    def map(self, z, psi=1.0):
        w = self.mapping(z)
        if psi != 1.0:
            w = torch.lerp(self.mapping.w_avg, w, psi)
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)

    @torch.no_grad()
    def update_w_avg(self, ws):
        batch_mean = ws[:, 0].mean(0)
        self.mapping.w_avg.copy_(torch.lerp(batch_mean, self.mapping.w_avg, 0.995))

    def forward(self, z, psi=1.0, noise_mode="random"):
        return self.synthesis(self.map(z, psi), noise_mode)


# ----------------------------------------------------------------------------------------------
# Discriminator (src/nets/discriminator.rs)


class ResidualBlock(nn.Module):
    def __init__(self, img_ch, tmp, out, first):
        super().__init__()
        self.fromrgb = EqualConv2d(img_ch, tmp, 1) if first else None
        self.conv0 = EqualConv2d(tmp, tmp, 3)
        self.conv1 = EqualConv2d(tmp, out, 3, down=True)
        self.skip = EqualConv2d(tmp, out, 1, bias=False, down=True, activate=False)

    def forward(self, x):
        if self.fromrgb is not None:
            x = self.fromrgb(x)
        y = self.skip(x, SQRT_HALF)
        return y + self.conv1(self.conv0(x), SQRT_HALF)


class Epilogue(nn.Module):
    def __init__(self, c4):
        super().__init__()
        self.conv = EqualConv2d(c4 + 1, c4, 3)
        self.fc = EqualLinear(c4 * 16, c4, activate=True)
        self.out = EqualLinear(c4, 1)


def minibatch_stddev(x, group_size):
    n, c, h, w = x.shape
    g = next(g for g in range(min(group_size, n), 0, -1) if n % g == 0)
    y = x.reshape(g, n // g, c, h, w)  # group k holds samples k, k+n/g, ...
    y = y - y.mean(0, keepdim=True)
    y = (y.square().mean(0) + 1e-8).sqrt()
    y = y.mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1)
    return torch.cat([x, y.repeat(g, 1, h, w)], 1)


class Discriminator(nn.Module):
    def __init__(self, resolution, img_ch, cbase, cmax, mbstd_group):
        super().__init__()
        self.mbstd_group = mbstd_group
        self.resolutions = []
        r = resolution
        while r > 4:
            self.resolutions.append(r)
            self.add_module(
                f"b{r}",
                ResidualBlock(img_ch, channels(cbase, cmax, r), channels(cbase, cmax, r // 2), r == resolution),
            )
            r //= 2
        self.b4 = Epilogue(channels(cbase, cmax, 4))

    def forward(self, img):
        x = img
        for r in self.resolutions:
            x = getattr(self, f"b{r}")(x)
        x = minibatch_stddev(x, self.mbstd_group)
        x = self.b4.conv(x)
        x = self.b4.fc(x.flatten(1))
        return self.b4.out(x)


# ----------------------------------------------------------------------------------------------
# DiffAugment (src/augment/diffaugment.rs)


def _per_sample_uniform(x):
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)


def aug_color(x):
    x = x + (_per_sample_uniform(x) - 0.5)
    m = x.mean(1, keepdim=True)
    x = (x - m) * (_per_sample_uniform(x) * 2.0) + m
    m = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - m) * (_per_sample_uniform(x) + 0.5) + m


def aug_translation(x, ratio=0.125):
    n, c, h, w = x.shape
    dev = x.device
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (n,), device=dev)
    tx = torch.randint(-sw, sw + 1, (n,), device=dev)
    # One zero pixel of padding; clamped source indices read zeros from outside.
    padded = F.pad(x, [1, 1, 1, 1])
    rows = (torch.arange(h, device=dev).unsqueeze(0) + ty.unsqueeze(1) + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=dev).unsqueeze(0) + tx.unsqueeze(1) + 1).clamp(0, w + 1)
    y = padded.gather(2, rows.reshape(n, 1, h, 1).expand(n, c, h, w + 2))
    return y.gather(3, cols.reshape(n, 1, 1, w).expand(n, c, h, w))


def aug_cutout(x, ratio=0.5):
    n, _, h, w = x.shape
    dev = x.device
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - sh % 2), (n, 1), device=dev)
    cx = torch.randint(0, w + (1 - sw % 2), (n, 1), device=dev)
    y0, x0 = cy - sh // 2, cx - sw // 2
    r = torch.arange(h, device=dev).unsqueeze(0)
    c = torch.arange(w, device=dev).unsqueeze(0)
    in_rows = (r >= y0) & (r < y0 + sh)
    in_cols = (c >= x0) & (c < x0 + sw)
    hole = in_rows.unsqueeze(2) & in_cols.unsqueeze(1)
    return x * (~hole).to(x.dtype).unsqueeze(1)


AUG_OPS = {"color": aug_color, "translation": aug_translation, "cutout": aug_cutout}


def parse_policy(s):
    if s in ("", "none"):
        return []
    return [AUG_OPS[p.strip()] for p in s.split(",")]


def augment(policy, x):
    for op in policy:
        x = op(x)
    return x


# ----------------------------------------------------------------------------------------------
# Training (src/train/mod.rs, src/train/optim.rs)


def make_adam(params, lr, reg_interval, kind):
    # Lazy regularisation: lr and betas scaled by interval/(interval+1) (optim.rs `Adam::lazy`).
    c = reg_interval / (reg_interval + 1) if reg_interval else 1.0
    betas = (0.0**c, 0.99**c)
    opts = {"fused": True} if kind == "fused" else {"foreach": kind == "foreach"}
    return torch.optim.Adam(params, lr=lr * c, betas=betas, eps=1e-8, **opts)


def adam_step(opt):
    # As optim.rs: a non-finite gradient entry must not poison the moments.
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                p.grad.nan_to_num_(0.0, 1e5, -1e5)
    opt.step()


def set_requires_grad(module, flag):
    for p in module.parameters():
        p.requires_grad_(flag)


class Trainer:
    def __init__(self, a, dataset, device):
        self.a, self.data, self.device = a, dataset, device
        res, ch = dataset.resolution, dataset.channels
        self.gamma = 0.0002 * res * res / a.batch if a.gamma == "auto" else float(a.gamma)
        self.ema_kimg = a.batch * 10.0 / 32.0
        self.policy = parse_policy(a.diffaug)
        torch.manual_seed(a.seed)
        self.G = Generator(a.z_dim, a.w_dim, a.map, res, ch, a.cbase, a.cmax).to(device)
        self.D = Discriminator(res, ch, a.cbase, a.cmax, a.mbstd_group).to(device)
        self.G_ema = copy.deepcopy(self.G).eval()
        if a.channels_last:
            for m in (self.G, self.D, self.G_ema):
                m.to(memory_format=torch.channels_last)
        set_requires_grad(self.G_ema, False)
        self.opt_g = make_adam(self.G.parameters(), a.glr, G_REG_INTERVAL if a.pl_weight > 0 else None, a.adam)
        self.opt_d = make_adam(self.D.parameters(), a.dlr, D_REG_INTERVAL if self.gamma > 0 else None, a.adam)
        self.g_params = list(self.G.parameters())
        self.ema_params = list(self.G_ema.parameters())
        self.g_buffers = list(self.G.buffers())
        self.ema_buffers = list(self.G_ema.buffers())
        self.sampler = Sampler(dataset.count, a.mirror, a.seed)
        self.cur_nimg = 0
        self.batch_idx = 0
        self.pl_mean = 0.0
        self.last = {}

    def aug(self, x):
        return augment(self.policy, x)

    def latents(self, n):
        return torch.randn(n, self.a.z_dim, device=self.device)

    def run_g(self, z):
        ws = self.G.map(z)
        self.G.update_w_avg(ws)
        if self.a.style_mixing > 0:
            num_ws = ws.shape[1]
            # Drawn on the CPU generator in this order, mixing or not, as the Rust code does.
            cutoff = int(torch.randint(1, num_ws, (1,)).item())
            if torch.rand(1).item() < self.a.style_mixing:
                ws2 = self.G.map(torch.randn_like(z))
                ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], 1)
        return self.G.synthesis(ws, "random"), ws

    def checked(self, loss, what):
        v = loss.item()
        if not math.isfinite(v):
            raise RuntimeError(f"{what} is {v} at step {self.batch_idx}")
        self.last[what] = v
        return v

    def step(self):
        a = self.a
        torch.manual_seed(derive_seed(a.seed, self.batch_idx))
        real = self.data.batch(self.sampler.take(self.cur_nimg, a.batch), self.device)

        # G main: non-saturating logistic loss, D frozen.
        set_requires_grad(self.D, False)
        fake, _ = self.run_g(self.latents(a.batch))
        loss_g = F.softplus(-self.D(self.aug(fake))).mean()
        self.checked(loss_g, "loss_G")
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        adam_step(self.opt_g)

        # G path-length regularisation, every 4 steps on half a batch.
        if a.pl_weight > 0 and self.batch_idx % G_REG_INTERVAL == 0:
            n = max(a.batch // 2, 1)
            img, ws = self.run_g(self.latents(n))
            h, w = img.shape[2], img.shape[3]
            noise = torch.randn_like(img) / math.sqrt(h * w)
            (grads,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grads.square().sum(2).mean(1).sqrt()
            pl_mean = self.pl_mean + (lengths.mean().item() - self.pl_mean) * 0.01
            penalty = (lengths - pl_mean).square()
            loss = penalty.mean() * (a.pl_weight * G_REG_INTERVAL)
            self.checked(penalty.mean(), "pl_penalty")
            self.pl_mean = pl_mean
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            adam_step(self.opt_g)

        # D main: fakes without a G graph, and reals.
        set_requires_grad(self.D, True)
        with torch.no_grad():
            fake = self.run_g(self.latents(a.batch))[0]
        fake_logits = self.D(self.aug(fake))
        real_logits = self.D(self.aug(real))
        loss_d = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        self.checked(loss_d, "loss_D")
        self.last["score_real"] = real_logits.mean().item()
        self.last["score_fake"] = fake_logits.mean().item()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        adam_step(self.opt_d)

        # D lazy R1 on the (augmented) reals, every 16 steps.
        if self.gamma > 0 and self.batch_idx % D_REG_INTERVAL == 0:
            x = real.detach().requires_grad_(True)
            logits = self.D(self.aug(x))
            (grads,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
            penalty = grads.square().sum(dim=[1, 2, 3])
            loss = penalty.mean() * (self.gamma / 2.0 * D_REG_INTERVAL)
            self.checked(penalty.mean(), "r1_penalty")
            self.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            adam_step(self.opt_d)

        self.update_ema()
        self.cur_nimg += a.batch
        self.batch_idx += 1

    @torch.no_grad()
    def update_ema(self):
        ema_nimg = self.ema_kimg * 1000.0
        if self.a.ema_rampup > 0:
            ema_nimg = min(ema_nimg, self.cur_nimg * self.a.ema_rampup)
        beta = 0.5 ** (self.a.batch / max(ema_nimg, 1e-8))
        # ema = lerp(p, ema, beta) = ema + (1 - beta) (p - ema)
        torch._foreach_lerp_(self.ema_params, self.g_params, 1.0 - beta)
        for e, b in zip(self.ema_buffers, self.g_buffers):
            e.copy_(b)


# ----------------------------------------------------------------------------------------------


def step_kind(batch_idx, pl, r1):
    """Which regularisers step `batch_idx` runs: plain, pl, r1 or pl+r1."""
    kind = "+".join(
        k for k, on in (("pl", pl and batch_idx % G_REG_INTERVAL == 0), ("r1", r1 and batch_idx % D_REG_INTERVAL == 0)) if on
    )
    return kind or "plain"


def param_table(module):
    """Trainable parameters and persistent buffers with the names the Rust VarStore uses."""
    rows = [(n, tuple(p.shape), True) for n, p in module.named_parameters()]
    rows += [(n, tuple(b.shape), False) for n, b in module.named_buffers()]
    return sorted(rows)


def count(module, trainable_only=True):
    return sum(math.prod(s) for _, s, t in param_table(module) if t or not trainable_only)


def peak_rss_gb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / (1024.0 * 1024.0)
    except OSError:
        pass
    return 0.0


def main():
    global LRELU_MODE
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--cbase", type=int, default=16384)
    p.add_argument("--cmax", type=int, default=512)
    p.add_argument("--z-dim", type=int, default=512)
    p.add_argument("--w-dim", type=int, default=512)
    p.add_argument("--map", type=int, default=2)
    p.add_argument("--pl-weight", type=float, default=2.0)
    p.add_argument("--gamma", default="auto", help="R1 weight, or auto = 0.0002*res^2/batch")
    p.add_argument("--glr", type=float, default=0.0025)
    p.add_argument("--dlr", type=float, default=0.0025)
    p.add_argument("--style-mixing", type=float, default=0.9)
    p.add_argument("--ema-rampup", type=float, default=0.05, help="0 disables the ramp-up")
    p.add_argument("--mbstd-group", type=int, default=4)
    p.add_argument("--mirror", action="store_true")
    p.add_argument("--diffaug", default="color,translation,cutout")
    p.add_argument("--steps", type=int, default=32, help="timed steps (a multiple of 16 covers whole reg cycles)")
    p.add_argument("--warmup-steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--adam", choices=["fused", "foreach", "single"], default="fused", help="torch.optim.Adam kernel (same maths)")
    p.add_argument("--lrelu", choices=["max", "native", "lrb"], default="native", help="native = F.leaky_relu, what a PyTorch user writes; lrb = the Rust formulation")
    p.add_argument("--channels-last", action="store_true", help="store 4-D parameters in NHWC, as vagan does")
    p.add_argument("--json", default=None)
    p.add_argument("--print-params", action="store_true", help="list parameter names/shapes and exit")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()
    LRELU_MODE = a.lrelu
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    data = Dataset(a.data)
    t = Trainer(a, data, device)
    g_count, d_count = count(t.G), count(t.D)
    print(f"G: {g_count} trainable parameters ({count(t.G, False)} with buffers w_avg/noise_const)")
    print(f"D: {d_count} trainable parameters")
    if a.print_params:
        for name, net in (("G", t.G), ("D", t.D)):
            for n, s, tr in param_table(net):
                print(f"{name} {n} {list(s)}{'' if tr else ' (buffer)'}")
        return

    for _ in range(a.warmup_steps):
        t.step()
    sync()
    times, cpu_times, kinds = [], [], []
    for i in range(a.steps):
        kinds.append(step_kind(t.batch_idx, a.pl_weight > 0, t.gamma > 0))
        t0, c0 = time.perf_counter(), time.process_time()
        t.step()
        sync()
        times.append((time.perf_counter() - t0) * 1000.0)
        # CPU time of all our threads: tells contention (wall >> cpu/threads) from real cost.
        cpu_times.append((time.process_time() - c0) * 1000.0)
        if not a.quiet:
            losses = " ".join(f"{k} {v:.4f}" for k, v in sorted(t.last.items()))
            print(f"step {t.batch_idx - 1} {times[-1]:.1f} ms {losses}", flush=True)

    median = statistics.median(times)
    # About `threads` when we had the CPUs to ourselves; much less means another process competed
    # (and OpenMP's spin-waits make contended steps several times slower, so rerun).
    cpu_util = sum(cpu_times) / sum(times)
    whole = (len(times) // D_REG_INTERVAL) * D_REG_INTERVAL or len(times)
    mean_ips = a.batch * whole * 1000.0 / sum(times[:whole])
    # The same mean from the per-kind medians: robust to other processes stealing the CPUs.
    per_kind = {k: statistics.median([x for x, kk in zip(times, kinds) if kk == k]) for k in set(kinds)}
    cycle = [step_kind(i, a.pl_weight > 0, t.gamma > 0) for i in range(D_REG_INTERVAL)]
    robust_ips = (
        a.batch * D_REG_INTERVAL * 1000.0 / sum(per_kind[k] for k in cycle)
        if all(k in per_kind for k in cycle) else None
    )
    out = {
        "impl": "pytorch",
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "resolution": data.resolution,
        "channels": data.channels,
        "batch": a.batch,
        "config": {k: getattr(a, k) for k in ("cbase", "cmax", "z_dim", "w_dim", "map", "pl_weight", "diffaug",
                                               "style_mixing", "mbstd_group", "adam", "lrelu", "seed")},
        "gamma": t.gamma,
        "g_params": g_count,
        "d_params": d_count,
        "warmup_steps": a.warmup_steps,
        "first_timed_step": a.warmup_steps,
        "step_ms": times,
        "median_step_ms": median,
        "img_per_s": a.batch * 1000.0 / median,
        "img_per_s_mean": mean_ips,
        "img_per_s_mean_steps": whole,
        "img_per_s_cycle_median": robust_ips,
        "median_step_ms_by_kind": per_kind,
        "step_kind": kinds,
        "step_cpu_ms": cpu_times,
        "cpu_util": cpu_util,
        "peak_rss_gb": peak_rss_gb(),
        "last_losses": t.last,
    }
    print(f"median {median:.1f} ms/step, {out['img_per_s']:.2f} img/s (median), "
          f"{mean_ips:.2f} img/s (mean over {whole} steps), "
          f"{robust_ips or float('nan'):.2f} img/s (16-step cycle of per-kind medians), "
          f"peak RSS {out['peak_rss_gb']:.2f} GB")
    if device.type == "cpu" and cpu_util < 0.85 * torch.get_num_threads():
        print(f"warning: CPU utilisation {cpu_util:.2f} for {torch.get_num_threads()} threads: "
              "another process competed for the CPUs, the timings are not representative", file=sys.stderr)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
