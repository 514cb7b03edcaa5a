#!/usr/bin/env python3
"""PyTorch replica of `dsb fit`'s training step on images, for a steps/s reference.

The same network and the same step as dsb's IPF iteration 0 on MNIST (src/nn/unet/,
src/fit/losses.rs, src/fit/kernels.rs, src/train/optim.rs), in float32:

- UNet (src/nn/unet/): a 3x3 input convolution to `width` channels; per level (multipliers
  1,2,2 by default) `blocks` residual blocks (GroupNorm -> SiLU -> conv3x3 -> + Linear(SiLU(time
  embedding)) -> GroupNorm -> SiLU -> conv3x3, plus a 1x1 skip convolution when the width
  changes) and, except at the last level, a stride-2 3x3 convolution; every block's output and
  the input of the first level kept as skips; the middle is residual block -> single-head
  self-attention (GroupNorm, 1x1 qkv, softmax(q^T k / sqrt(C)), 1x1 projection, residual) ->
  residual block; the way up has `blocks + 1` residual blocks per level, each on its input
  concatenated with a skip, then nearest x2 upsampling and a 3x3 convolution (except level 0);
  GroupNorm -> SiLU -> a zero-initialised 3x3 output convolution. GroupNorm eps 1e-5 with
  min(groups, channels) groups. The time t/T goes through 16 sinusoidal frequencies
  2*pi*1000^(j/15)/8 (sin, cos interleaved), Linear(32, E) -> SiLU -> Linear(E, E) -> SiLU,
  E = 4 * width. Weights and biases uniform on +-1/sqrt(fan_in) (PyTorch's default, and dsb's).
- The step: B training images x0 (pixels b/127.5 - 1), a uniform step k in 0..N per image on the
  geometric grid (N = 50, T = 5, t_1 = T/N/100) of the OU reference; x_{k+1} = abar_{k+1} x0 +
  nu_{k+1} eps drawn in one shot; the target E[x_k | x0, x_{k+1}]; the backward mean
  b_k x_{k+1} + lambda_k g(x_{k+1}, t_{k+1}/T); loss = 1/2 mean(((target - mean)/s_k)^2), its
  value read back every step (as dsb does, for its report); Adam (0.9, 0.999, 1e-8, no weight
  decay) with a cosine decay of the learning rate from lr to lr/10 over `iters` steps, the
  gradient clipped to global L2 norm 10, and an EMA of the weights with decay
  min(0.995, (1 + t)/(10 + t)).

Differences that are not the step itself: the random draws use PyTorch's generator on the
device (dsb draws them with a seeded host generator and uploads them), and TF32 is off unless
--tf32 (candle computes f32 matrix products and convolutions in full f32).

Usage (writes a JSON summary; --loss-csv writes the per-step losses):
  python3 scripts/unet_reference.py --device cuda --steps 200 --json out/torch.json
  python3 scripts/unet_reference.py --device cpu --steps 2 --warmup 1     # a dry run on a CPU
"""

import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

FREQS = 16


def load_images(data_dir):
    """The training images of an IDX directory, as float32 [n, 1, 28, 28] in [-1, 1]."""
    for name in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            break
    else:
        sys.exit(f"unet_reference.py: no train-images-idx3-ubyte(.gz) in {data_dir}")
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != 0x803:
        sys.exit(f"unet_reference.py: {path} is not an IDX image file (magic {magic:#x})")
    pixels = torch.frombuffer(bytearray(raw[16 : 16 + n * rows * cols]), dtype=torch.uint8)
    return pixels.reshape(n, 1, rows, cols).float() / 127.5 - 1.0


def group_norm(channels, groups):
    return nn.GroupNorm(min(groups, channels), channels, eps=1e-5)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb, groups):
        super().__init__()
        self.norm1 = group_norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(temb, cout)
        self.norm2 = group_norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.skip(x) if self.skip is not None else x) + h


class Attention(nn.Module):
    def __init__(self, channels, groups):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, c, h * w)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        scores = q.transpose(1, 2) @ k / math.sqrt(c)
        attn = torch.softmax(scores, dim=-1)
        out = v @ attn.transpose(1, 2)
        return x + self.proj(out.reshape(b, c, h, w))


class UNet(nn.Module):
    def __init__(self, channels=1, width=32, mults=(1, 2, 2), blocks=2, attention=True, groups=8, temb=None):
        super().__init__()
        temb = temb or 4 * width
        freqs = [2 * math.pi * 1000 ** (j / (FREQS - 1)) / 8 for j in range(FREQS)]
        self.register_buffer("freqs", torch.tensor(freqs, dtype=torch.float32))
        self.time_in = nn.Linear(2 * FREQS, temb)
        self.time_out = nn.Linear(temb, temb)
        self.conv_in = nn.Conv2d(channels, width, 3, padding=1)
        widths = [width * m for m in mults]
        self.down_blocks, self.down_ops = nn.ModuleList(), nn.ModuleList()
        skips, cur = [width], width
        for level, out in enumerate(widths):
            level_blocks = nn.ModuleList()
            for _ in range(blocks):
                level_blocks.append(ResBlock(cur, out, temb, groups))
                cur = out
                skips.append(cur)
            self.down_blocks.append(level_blocks)
            if level + 1 < len(widths):
                self.down_ops.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                skips.append(cur)
            else:
                self.down_ops.append(nn.Identity())
        self.mid_in = ResBlock(cur, cur, temb, groups)
        self.mid_attn = Attention(cur, groups) if attention else None
        self.mid_out = ResBlock(cur, cur, temb, groups)
        self.up_blocks, self.up_ops = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(len(widths))):
            out = widths[level]
            level_blocks = nn.ModuleList()
            for _ in range(blocks + 1):
                level_blocks.append(ResBlock(cur + skips.pop(), out, temb, groups))
                cur = out
            self.up_blocks.append(level_blocks)
            self.up_ops.append(nn.Conv2d(cur, cur, 3, padding=1) if level > 0 else nn.Identity())
        self.norm_out = group_norm(cur, groups)
        self.conv_out = nn.Conv2d(cur, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def time_embedding(self, t):
        angle = t[:, None] * self.freqs[None, :]
        feats = torch.stack([angle.sin(), angle.cos()], dim=2).reshape(t.shape[0], 2 * FREQS)
        return F.silu(self.time_out(F.silu(self.time_in(feats))))

    def forward(self, x, t):
        temb = self.time_embedding(t)
        h = self.conv_in(x)
        skips = [h]
        for level_blocks, down in zip(self.down_blocks, self.down_ops):
            for block in level_blocks:
                h = block(h, temb)
                skips.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                skips.append(h)
        h = self.mid_in(h, temb)
        if self.mid_attn is not None:
            h = self.mid_attn(h)
        h = self.mid_out(h, temb)
        for level_blocks, up in zip(self.up_blocks, self.up_ops):
            for block in level_blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), temb)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def kernel_tables(steps, horizon, device):
    """Per-step coefficients of dsb's OU reference on its geometric grid (float64)."""
    t1 = min(0.01 * horizon / steps, horizon / steps)
    times = [0.0] + [t1 * (horizon / t1) ** ((k - 1) / (steps - 1)) for k in range(1, steps + 1)]
    decay = [math.exp(-(times[k + 1] - times[k])) for k in range(steps)]
    sd = [math.sqrt(1 - a * a) for a in decay]
    cum, var = [1.0], [0.0]
    for k in range(steps):
        cum.append(cum[k] * decay[k])
        var.append(decay[k] ** 2 * var[k] + sd[k] ** 2)
    lam = [sd[k] ** 2 / (decay[k] * math.sqrt(var[k + 1])) for k in range(steps)]
    b = [(1 - sd[k] ** 2) / decay[k] for k in range(steps)]
    as_t = lambda v: torch.tensor(v, dtype=torch.float64, device=device)
    return {
        "decay": as_t(decay), "sd": as_t(sd), "cum": as_t(cum), "var": as_t(var),
        "b": as_t(b), "lam": as_t(lam), "time": as_t([t / horizon for t in times]),
    }


def cosine_lr(peak, it, total):
    u = 0.0 if total <= 1 else it / (total - 1)
    floor = 0.1 * peak
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * u))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="tests/fixtures/mnist-5k")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    p.add_argument("--steps", type=int, default=200, help="timed steps")
    p.add_argument("--max-seconds", type=float, default=120.0, help="stop the timed steps after this")
    p.add_argument("--iters", type=int, default=4000, help="length of the learning-rate schedule")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--mults", default="1,2,2")
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--groups", type=int, default=8)
    p.add_argument("--no-attention", action="store_true")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--grad-clip", type=float, default=10.0)
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--n-steps", type=int, default=50, help="time steps N of the diffusion")
    p.add_argument("--horizon", type=float, default=5.0)
    p.add_argument("--held-out", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tf32", action="store_true", help="allow TF32 matrix products and convolutions")
    p.add_argument("--json", help="write the summary here")
    p.add_argument("--loss-csv", help="write step,loss,seconds per step here")
    a = p.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    images = load_images(a.data_dir)
    perm = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(a.seed))
    n_train = images.shape[0] - int(round(a.held_out * images.shape[0]))
    train = images[perm[:n_train]].to(dev)
    d = train[0].numel()

    net = UNet(channels=train.shape[1], width=a.width, mults=[int(m) for m in a.mults.split(",")],
               blocks=a.blocks, attention=not a.no_attention, groups=a.groups).to(dev)
    params = [q for q in net.parameters()]
    n_params = sum(q.numel() for q in params)
    opt = torch.optim.Adam(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    ema = [q.detach().clone() for q in params]
    tab = kernel_tables(a.n_steps, a.horizon, dev)

    def step(it):
        idx = torch.randint(0, n_train, (a.batch,), device=dev)
        x0 = train[idx].reshape(a.batch, d)
        ks = torch.randint(0, a.n_steps, (a.batch,), device=dev)
        col = lambda v: v.to(torch.float32)[:, None]
        cum_next, var_next = tab["cum"][ks + 1], tab["var"][ks + 1]
        cum, var = tab["cum"][ks], tab["var"][ks]
        dk, s2 = tab["decay"][ks], tab["sd"][ks] ** 2
        denom = s2 + dk * dk * var
        floor = (0.5 * var / denom).mean()
        eps = torch.randn(a.batch, d, device=dev)
        x_next = x0 * col(cum_next) + eps * col(var_next.sqrt())
        target = x0 * col(s2 * cum / denom) + x_next * col(var * dk / denom)
        t = tab["time"][ks + 1].to(torch.float32)
        g = net(x_next.reshape(a.batch, *train.shape[1:]), t).reshape(a.batch, d)
        mean = x_next * col(tab["b"][ks]) + g * col(tab["lam"][ks])
        loss = 0.5 * (((target - mean) * col(1.0 / tab["sd"][ks])) ** 2).mean()
        for group in opt.param_groups:
            group["lr"] = cosine_lr(a.lr, it, a.iters)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, a.grad_clip)
        opt.step()
        rho = min(a.ema, (1 + it) / (10 + it))
        with torch.no_grad():
            torch._foreach_mul_(ema, rho)
            torch._foreach_add_(ema, [q.detach() for q in params], alpha=1 - rho)
        return loss.item() + floor.item()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    losses, secs = [], []
    t_start = time.perf_counter()
    for it in range(a.warmup):
        t0 = time.perf_counter()
        losses.append(step(it))
        sync()
        secs.append(time.perf_counter() - t0)
    warm_s = time.perf_counter() - t_start
    sync()
    t0 = time.perf_counter()
    timed = 0
    for it in range(a.warmup, a.warmup + a.steps):
        ts = time.perf_counter()
        losses.append(step(it))
        sync()
        secs.append(time.perf_counter() - ts)
        timed += 1
        if time.perf_counter() - t0 > a.max_seconds:
            break
    elapsed = time.perf_counter() - t0
    rate = timed / elapsed if timed else float("nan")
    summary = {
        "torch": torch.__version__,
        "device": a.device,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "tf32": a.tf32,
        "batch": a.batch,
        "unet": {"width": a.width, "mults": a.mults, "blocks": a.blocks, "groups": a.groups,
                 "attention": not a.no_attention, "time_embed_dim": 4 * a.width},
        "parameters": n_params,
        "train_images": n_train,
        "warmup_steps": a.warmup,
        "warmup_seconds": warm_s,
        "timed_steps": timed,
        "timed_seconds": elapsed,
        "steps_per_second": rate,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "max_memory_mib": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
    }
    if a.loss_csv:
        with open(a.loss_csv, "w") as f:
            f.write("step,loss,seconds\n")
            for i, (l, s) in enumerate(zip(losses, secs)):
                f.write(f"{i},{l!r},{s:.6f}\n")
    text = json.dumps(summary, indent=2)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
