"""Time one level-1 JEPA training step of VideoViT against transformers' VJEPA2Model.

One step = EMA target encoder forward (no grad) -> layer norm of its tokens; context encoder
forward; L1 loss between the two; backward; AdamW step; EMA update of the target. The same step
is run for our ``VideoViT`` and for transformers' ``VJEPA2Model`` built from a ``VJEPA2Config``
of the same sizes (random weights; its encoder's last hidden state is used the same way).

The two models' steps are interleaved (ours, reference, ours, ...) so that load from other
processes on a shared machine hits both alike; the median step time is reported. Model FLOPs
utilisation (MFU) divides the model's matmul FLOPs per second by a matrix-product peak measured
here in the step's precision (best of a large square matmul, before and after the timed steps).
On a GPU each step is timed between two ``cuda.synchronize`` calls, so queued kernels count.

    python tools/benchmark_model.py                      # ViT-S/16, 16 x 128 x 128, batch 4
    python tools/benchmark_model.py --json bench.json --steps 8 --compile
    python tools/benchmark_model.py --device cuda --bf16 --size 224 --batch 32
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hjepa.models.vit import build_encoder


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_flops(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32,
                      device: torch.device | str = "cpu") -> float:
    """Best FLOP/s of an n x n x n matrix product in ``dtype`` on ``device`` (default threads)."""
    device = torch.device(device)
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def encoder_flops(dim: int, depth: int, mlp_hidden: int, tokens: int, patch_in: int, batch: int) -> float:
    """Matmul FLOPs of one encoder forward (multiply-add = 2): patch embed, qkv, attention, proj, MLP."""
    per_token_linear = 3 * dim * dim + dim * dim + 2 * dim * mlp_hidden  # qkv, proj, fc1, fc2
    attn = 2 * tokens * dim  # QK^T and AV, per query token, summed over heads
    per_layer = 2 * batch * tokens * (per_token_linear + attn)
    return depth * per_layer + 2 * batch * tokens * patch_in * dim


class JEPAStep:
    """Context encoder + EMA target encoder + AdamW; ``encode(model, x) -> tokens [B, N, D]``."""

    def __init__(self, encoder: nn.Module, encode: Callable[[nn.Module, Tensor], Tensor], lr: float = 1e-4) -> None:
        self.encoder = encoder.train()
        self.target = copy.deepcopy(encoder).eval().requires_grad_(False)
        self.encode = encode
        self.params = [p for p in self.encoder.parameters() if p.requires_grad]
        self.target_params = [p for p in self.target.parameters()]
        self.opt = torch.optim.AdamW(self.params, lr=lr, weight_decay=0.05)
        self.momentum = 0.998

    def __call__(self, x: Tensor) -> float:
        with torch.no_grad():
            tgt = self.encode(self.target, x)
            tgt = F.layer_norm(tgt, tgt.shape[-1:])
        out = self.encode(self.encoder, x)
        loss = (out - tgt).abs().mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.target_params, self.params, 1.0 - self.momentum)
        return float(loss.detach())


def build_reference(dim: int, depth: int, heads: int, frames: int, size: int, patch: int, tubelet: int) -> nn.Module:
    from transformers import VJEPA2Config, VJEPA2Model

    cfg = VJEPA2Config(
        crop_size=size, frames_per_clip=frames, patch_size=patch, tubelet_size=tubelet, hidden_size=dim,
        num_hidden_layers=depth, num_attention_heads=heads, mlp_ratio=4.0,
        pred_hidden_size=64, pred_num_hidden_layers=1, pred_num_attention_heads=2,
    )
    model = VJEPA2Model(cfg)
    return model.encoder  # the predictor is not part of this step; keep its weights out of AdamW and EMA


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="small", help="registered encoder name (default: small = ViT-S/16)")
    ap.add_argument("--pos-embed", default="rope", choices=["rope", "sincos"],
                    help="ours; rope matches the reference model (default)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="torch.compile our encoder (reference stays eager)")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast for both models")
    ap.add_argument("--no-reference", action="store_true", help="time ours only")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:<i>")
    ap.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    ours = build_encoder(args.model, pos_embed=args.pos_embed).to(device)
    dim, depth, heads = ours.embed_dim, ours.depth, ours.num_heads
    patch, tubelet = ours.patch_size, ours.tubelet_size
    tokens = ours.num_tokens(args.frames, args.size, args.size)
    mlp_hidden = ours.blocks[0].mlp.fc1.out_features
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=device)

    ours_fn = torch.compile(ours) if args.compile else ours
    runs: dict[str, JEPAStep] = {"ours": JEPAStep(ours, lambda m, v: m(v))}
    if args.compile:  # compile the module actually called, target and context separately
        runs["ours"].encode = lambda m, v: (ours_fn(v) if m is ours else m(v))
    if not args.no_reference:
        ref = build_reference(dim, depth, heads, args.frames, args.size, patch, tubelet).to(device)
        x_ref = x.permute(0, 2, 1, 3, 4)  # transformers takes [B, T, C, H, W]
        runs["reference"] = JEPAStep(ref, lambda m, v: m(pixel_values_videos=x_ref).last_hidden_state)

    peak_dtype = torch.bfloat16 if args.bf16 else torch.float32
    # A GPU needs a bigger product than a CPU to reach its peak.
    peak_n = 8192 if device.type == "cuda" else 2048
    peak_before = matmul_peak_flops(peak_n, dtype=peak_dtype, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    times: dict[str, list[float]] = {k: [] for k in runs}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(args.warmup + args.steps):
        for name, step in runs.items():
            _sync(device)
            t0 = time.perf_counter()
            with autocast:
                loss = step(x)
            _sync(device)
            dt = time.perf_counter() - t0
            if not (loss == loss):
                raise RuntimeError(f"{name}: loss is NaN")
            if i >= args.warmup:
                times[name].append(dt)

    # Read before the second matmul-peak measurement, whose 8192^2 operands are not the step's.
    gpu_peak_mb = round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None
    # MFU is measured against the peak of the precision the matmuls run in; load from other
    # processes can only lower a measurement, so the better of the two is the peak.
    peak = max(peak_before, matmul_peak_flops(peak_n, dtype=peak_dtype, device=device))
    step_flops = 4 * encoder_flops(dim, depth, mlp_hidden, tokens, 3 * tubelet * patch * patch, args.batch)
    result: dict = {
        "model": args.model, "pos_embed": args.pos_embed, "clip": [args.frames, args.size, args.size],
        "batch": args.batch, "tokens_per_clip": tokens, "steps": args.steps, "warmup": args.warmup,
        "compile": args.compile, "bf16": args.bf16, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "step_gflop": step_flops / 1e9, "matmul_peak_gflops": peak / 1e9,
        "matmul_peak_dtype": "bfloat16" if args.bf16 else "float32",
    }
    if gpu_peak_mb is not None:  # both models' steps together: the larger of the two is the figure
        result["gpu_peak_memory_mb"] = gpu_peak_mb
    for name, ts in times.items():
        med = statistics.median(ts)
        result[f"{name}_step_s"] = med
        result[f"{name}_clips_per_s"] = args.batch / med
        result[f"{name}_mfu"] = step_flops / med / peak
        result[f"{name}_step_s_all"] = ts
    if "reference" in times:
        result["speedup_vs_reference"] = result["reference_step_s"] / result["ours_step_s"]

    print(f"level-1 JEPA step, {args.model} ({dim}x{depth}, {heads} heads, {args.pos_embed}), "
          f"clip {args.frames}x{args.size}x{args.size}, batch {args.batch}, {tokens} tokens/clip, "
          f"{torch.get_num_threads()} threads, device {result['device']}, bf16={args.bf16}, compile={args.compile}")
    print(f"matmul peak ({result['matmul_peak_dtype']}, measured): {peak / 1e9:.1f} GFLOP/s; "
          f"model FLOPs per step: {step_flops / 1e9:.1f} GFLOP")
    for name in times:
        print(f"{name:>10}: {result[f'{name}_step_s']:.3f} s/step  {result[f'{name}_clips_per_s']:.2f} clips/s  "
              f"MFU {100 * result[f'{name}_mfu']:.1f}%")
    if "speedup_vs_reference" in result:
        print(f"speed-up vs transformers VJEPA2Model: {result['speedup_vs_reference']:.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
