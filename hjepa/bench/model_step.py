"""Time ``hjepa pretrain``'s training step beside V-JEPA 2's, as ratios from one run.

Ours is :class:`hjepa.bench.train_step.HJEPATrainStep`: ``HJEPAModule``'s own training step
(the config's objectives, forward, backward, clipping, AdamW with its schedules, EMA). The
reference is :class:`hjepa.bench.reference.VJEPA2ReferenceStep`: transformers' ``VJEPA2Model``
encoder and predictor with V-JEPA's multi-block context/target masks. Both run on the same
uint8 batch, interleaved (ours, reference, ours, ...) so that load from other processes hits
both alike; the median step time is reported.

Per step: FLOPs from ``torch.utils.flop_counter`` (one counted step, forward and backward),
achieved FLOP/s, MFU against a matrix-product peak measured here in the step's precision, and
peak memory (see ``hjepa.bench.measure.PeakMemory`` for what that is on CPU). The ``windows``
rows time our step on clips of 1, 2, 4 and 8 windows (batch 1): cost per window must stay flat.

    python tools/benchmark_model.py                      # ViT-S/16, 16 x 128 x 128, batch 4
    python tools/benchmark_model.py --config configs/pretrain/default.yaml --windows 1 2 4
    python tools/benchmark_model.py --device cuda --precision bf16 --json bench.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from hjepa.bench.measure import PeakMemory, count_flops, matmul_peak_flops, sync
from hjepa.bench.train_step import HJEPATrainStep, random_batch
from hjepa.errors import UserError
from hjepa.models.config import EncoderConfig, HJEPAConfig, LevelConfig, PredictorConfig
from hjepa.train.module import OptimConfig


@dataclass
class BenchSetup:
    """What one benchmarked step trains: the module's configuration and the clip it sees.

    ``frames`` = windows x ``arch.frames_per_window``; the batch is ``[batch, frames, size, size, 3]``.
    """

    arch: HJEPAConfig
    optim: OptimConfig
    gradient_clip_val: float | None
    frames: int
    size: int
    batch: int
    source: str

    def with_context_keep(self, keep: float) -> "BenchSetup":
        """The same step with level 1's context encoding ``keep`` of each step's tokens."""
        levels = [dataclasses.replace(self.arch.levels[0], context_keep=keep), *self.arch.levels[1:]]
        try:
            arch = dataclasses.replace(self.arch, levels=levels)
        except ValueError as err:
            raise UserError(str(err)) from err
        return BenchSetup(arch, self.optim, self.gradient_clip_val, self.frames, self.size, self.batch,
                          f"{self.source}, context_keep {keep:g}")

    def with_windows(self, windows: int, batch: int) -> "BenchSetup":
        return BenchSetup(self.arch, self.optim, self.gradient_clip_val, windows * self.arch.frames_per_window,
                          self.size, batch, self.source)


def vits16_setup(frames: int = 16, size: int = 128, batch: int = 4, encoder: str = "small") -> BenchSetup:
    """V-JEPA's benchmark sizes: ViT-S/16 (``small``: 384 x 12, 6 heads, RoPE), predictor 192 x 6,
    one level with the future objective (horizon 2), one window of ``frames`` frames."""
    arch = HJEPAConfig(
        frames_per_window=frames,
        encoder=EncoderConfig(name=encoder, pos_embed="rope"),
        levels=[LevelConfig(horizon=2, predictor=PredictorConfig(embed_dim=192, depth=6, num_heads=6))],
    )
    return BenchSetup(arch, OptimConfig(), 1.0, frames, size, batch, f"{encoder}/16, one level")


def config_setup(path: str | Path, batch: int | None = None) -> BenchSetup:
    """The step a ``hjepa pretrain --config`` file trains: its ``model.arch``, ``model.optim``,
    ``trainer.gradient_clip_val`` and ``data`` clip (windows, resolution, batch size)."""
    cfg = yaml.safe_load(Path(path).read_text()) or {}
    model, data, trainer = cfg.get("model", {}), cfg.get("data", {}), cfg.get("trainer", {})
    try:
        arch = HJEPAConfig(**model.get("arch", {}))
        optim = OptimConfig(**model.get("optim", {}))
    except (TypeError, ValueError) as err:  # an unknown key or a bad value: the file's fault
        raise UserError(f"{path}: {err}") from err
    frames = int(data.get("num_windows", 4)) * arch.frames_per_window
    return BenchSetup(arch, optim, trainer.get("gradient_clip_val", 1.0), frames, int(data.get("resolution", 64)),
                      int(batch or data.get("batch_size", 8)), str(path))


def reference_step(setup: BenchSetup, device: torch.device, precision: str):
    """V-JEPA 2's step at the sizes of ``setup``'s level 1 (encoder and predictor)."""
    from hjepa.bench.reference import VJEPA2ReferenceStep
    from hjepa.models.vit import build_encoder

    enc = setup.arch.encoder
    vit = build_encoder(enc.name, patch_size=enc.patch_size, tubelet_size=enc.tubelet_size)
    pred = setup.arch.levels[0].predictor
    mlp_ratio = vit.blocks[0].mlp.fc1.out_features / vit.embed_dim
    return VJEPA2ReferenceStep(
        dim=enc.embed_dim or vit.embed_dim, depth=enc.depth or vit.depth, heads=enc.num_heads or vit.num_heads,
        mlp_ratio=mlp_ratio, pred_dim=pred.embed_dim, pred_depth=pred.depth, pred_heads=pred.num_heads,
        frames=setup.frames, size=setup.size, patch=enc.patch_size, tubelet=enc.tubelet_size, device=device,
        precision=precision, gradient_clip_val=setup.gradient_clip_val,
    )


def time_interleaved(steps: dict[str, Callable[[dict], float]], batch: dict, device: torch.device, warmup: int,
                     repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each step, the steps taking turns; warm-up calls are not kept."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(warmup + repeats):
        for name, step in steps.items():
            sync(device)
            t0 = time.perf_counter()
            loss = step(batch)
            sync(device)
            if loss != loss:
                raise RuntimeError(f"{name}: the loss is NaN")
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def step_figures(name: str, step: Callable[[dict], float], batch: dict, seconds: list[float], peak_flops: float,
                 device: torch.device) -> dict[str, Any]:
    """``<name>_step_s``, ``_clips_per_s``, ``_gflop_per_clip``, ``_gflops``, ``_mfu``, ``_peak_memory_mb``."""
    clips = batch["clip"].shape[0]
    flops = count_flops(lambda: step(batch)).total
    with PeakMemory(device) as mem:
        step(batch)
    med = statistics.median(seconds)
    return {
        f"{name}_step_s": med,
        f"{name}_step_s_all": seconds,
        f"{name}_clips_per_s": clips / med,
        f"{name}_gflop_per_clip": flops / clips / 1e9,
        f"{name}_gflops": flops / med / 1e9,
        f"{name}_mfu": flops / med / peak_flops,
        f"{name}_peak_memory_mb": mem.mb,
        "peak_memory_kind": mem.kind,
    }


def windows_rows(setup: BenchSetup, windows: list[int], device: torch.device, precision: str, warmup: int,
                 repeats: int) -> list[dict[str, Any]]:
    """Our step on clips of each window count (batch 1): seconds and peak memory per clip."""
    rows = []
    for w in windows:
        s = setup.with_windows(w, batch=1)
        step = HJEPATrainStep(s.arch, s.optim, s.gradient_clip_val, device, precision)
        batch = random_batch(1, s.frames, s.size, device, seed=w)
        seconds = time_interleaved({"ours": step}, batch, device, warmup, repeats)["ours"]
        with PeakMemory(device) as mem:
            step(batch)
        med = statistics.median(seconds)
        rows.append({"windows": w, "frames": s.frames, "s_per_clip": med, "s_per_window": med / w,
                     "peak_memory_mb": mem.mb})
    return rows


def run(setup: BenchSetup, device: torch.device, precision: str = "fp32", warmup: int = 2, repeats: int = 5,
        reference: bool = True, windows: list[int] | None = None, compile: bool = False) -> dict[str, Any]:
    """Every figure of the model-step benchmark as a flat dict (see the module docstring)."""
    torch.manual_seed(0)
    steps: dict[str, Callable[[dict], float]] = {
        "ours": HJEPATrainStep(setup.arch, setup.optim, setup.gradient_clip_val, device, precision, compile=compile)}
    if reference:
        steps["reference"] = reference_step(setup, device, precision)
    batch = random_batch(setup.batch, setup.frames, setup.size, device)
    peak_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    peak_n = 8192 if device.type == "cuda" else 2048  # a GPU needs a larger product to reach its peak
    peak_before = matmul_peak_flops(peak_n, dtype=peak_dtype, device=device)
    times = time_interleaved(steps, batch, device, warmup, repeats)
    # Load from other processes can only lower a measurement: the better of two is the peak.
    peak = max(peak_before, matmul_peak_flops(peak_n, dtype=peak_dtype, device=device))
    enc = setup.arch.encoder
    result: dict[str, Any] = {
        "setup": setup.source, "encoder": enc.name, "levels": setup.arch.num_levels,
        "clip": [setup.frames, setup.size, setup.size], "batch": setup.batch, "precision": precision,
        "compile": compile, "steps": repeats, "warmup": warmup, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "matmul_peak_gflops": peak / 1e9,
    }
    for name, step in steps.items():
        result.update(step_figures(name, step, batch, times[name], peak, device))
    if reference:
        result["speedup_vs_reference"] = result["reference_step_s"] / result["ours_step_s"]
        fractions = steps["reference"].context_fractions
        result["reference_context_fraction"] = sum(fractions) / len(fractions)
    if windows:
        rows = windows_rows(setup, windows, device, precision, warmup=1, repeats=max(2, repeats // 2))
        result["windows"] = rows
        result["windows_per_window_ratio"] = rows[-1]["s_per_window"] / rows[0]["s_per_window"]
    return result


def report(result: dict[str, Any]) -> str:
    """The figures as a few lines of text."""
    lines = [f"training step: {result['setup']} ({result['encoder']}, {result['levels']} level(s)), clip "
             f"{'x'.join(map(str, result['clip']))}, batch {result['batch']}, {result['precision']}, "
             f"{result['threads']} threads, {result['device']}; matmul peak {result['matmul_peak_gflops']:.0f} GFLOP/s"]
    for name in ("ours", "reference"):
        if f"{name}_step_s" in result:
            lines.append(
                f"{name:>10}: {result[f'{name}_clips_per_s']:.2f} clips/s  {result[f'{name}_gflop_per_clip']:.1f} "
                f"GFLOP/clip  {result[f'{name}_gflops']:.0f} GFLOP/s  MFU {100 * result[f'{name}_mfu']:.1f}%  "
                f"peak {result[f'{name}_peak_memory_mb']:.0f} MB ({result['peak_memory_kind']})")
    if "speedup_vs_reference" in result:
        lines.append(f"clips/s vs V-JEPA 2's step: {result['speedup_vs_reference']:.2f}x")
    for row in result.get("windows", []):
        lines.append(f"  {row['windows']} window(s), {row['frames']} frames: {row['s_per_clip']:.3f} s/clip, "
                     f"{row['s_per_window']:.3f} s/window, peak {row['peak_memory_mb']:.0f} MB")
    if "windows_per_window_ratio" in result:
        lines.append(f"  per-window time, most windows / one window: {result['windows_per_window_ratio']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=None, help="a `hjepa pretrain` config (default: ViT-S/16 sizes)")
    ap.add_argument("--model", default="small", help="without --config: the encoder (default small = ViT-S/16)")
    ap.add_argument("--frames", type=int, default=16, help="without --config: frames of the one window")
    ap.add_argument("--size", type=int, default=128, help="without --config: frame side")
    ap.add_argument("--batch", type=int, default=None, help="clips per step (default 4, or the config's)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per model (median reported)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--compile", action="store_true", help="torch.compile our model (the reference stays eager)")
    ap.add_argument("--context_keep", type=float, default=None,
                    help="level 1's context_keep (fraction of each step's tokens its context encodes; default: the setup's)")
    ap.add_argument("--no-reference", action="store_true", help="time ours only")
    ap.add_argument("--windows", type=int, nargs="*", default=[1, 2, 4, 8],
                    help="window counts of the per-clip-length rows (none: skip them)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:<i>")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    setup = config_setup(args.config, args.batch) if args.config else vits16_setup(args.frames, args.size, args.batch or 4, args.model)
    if args.context_keep is not None:
        setup = setup.with_context_keep(args.context_keep)
    result = run(setup, torch.device(args.device), args.precision, args.warmup, args.steps, not args.no_reference,
                 args.windows, args.compile)
    print(report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
