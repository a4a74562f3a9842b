"""``hjepa benchmark``: the training step, the pipeline and decoding, each beside a reference.

Writes ``<out>/summary.json`` (flat): ``train/ours_clips_per_s``, ``train/ours_gflop_per_clip``,
``train/ours_mfu``, ``train/reference_clips_per_s``, ``train/speedup_vs_reference``, ... for
``hjepa pretrain``'s step against V-JEPA 2's (``hjepa.bench.model_step``);
``train/windows<w>_s_per_clip`` per clip length; ``pipeline/*`` for the whole pretraining
pipeline on real video against its model step (``hjepa.bench.pipeline``);
``decode/<reader>_fps`` and ``loader/<source>_workers<n>_clips_per_s`` (``hjepa.bench.decoding``).
Ratios are the figures to quote: absolute numbers move with the machine's load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hjepa.cli.function_cli import run_function_cli

def benchmark(
    out: str = "runs/benchmark",
    train_config: str | None = None,
    model: str = "small",
    frames: int = 16,
    size: int = 128,
    batch: int | None = None,
    steps: int = 5,
    bf16: bool = False,
    compile: bool = False,
    context_keep: float | None = None,
    device: str = "cpu",
    windows: list[int] = [1, 2, 4, 8],  # noqa: B006 (read only)
    pipeline: bool = True,
    pipeline_steps: int = 40,
    pipeline_workers: int = 0,
    decoding: bool = True,
    videos: str | None = None,
    quick: bool = True,
) -> dict:
    """Run the benchmarks.

    Args:
        out: output folder for ``summary.json``.
        train_config: a ``hjepa pretrain`` config whose step to time (default: ViT-S/16 sizes,
            one level).
        model: without ``train_config``: the encoder (``small`` = ViT-S/16).
        frames, size: without ``train_config``: frames of the one window and the frame side.
        batch: clips per step (default 4, or the config's batch size).
        steps: timed training steps per model (after 2 warm-up steps), median reported.
        bf16: bfloat16 autocast for both steps.
        compile: ``torch.compile`` our model (the reference stays eager).
        context_keep: level 1's ``context_keep`` for our step (the fraction of each step's
            tokens its context encodes in training); default: the setup's own.
        device: where the training step runs: ``cpu``, ``cuda`` or ``cuda:<i>``.
        windows: window counts of the per-clip-length rows (empty: skip them).
        pipeline: also time ``hjepa pretrain`` (default config) on the real videos.
        pipeline_steps, pipeline_workers: its length and loader workers.
        decoding: also run the decoding / loader benchmark.
        videos: folder of real clips (default: ../shared/data/videos beside the repository).
        quick: decoding on 6 clips and fewer loader batches.
    """
    from hjepa.bench import decoding as decoding_bench
    from hjepa.bench import model_step

    summary: dict = {"load_avg_start": os.getloadavg()[0]}
    argv = ["--model", model, "--frames", str(frames), "--size", str(size), "--steps", str(steps),
            "--device", device, "--precision", "bf16" if bf16 else "fp32", "--windows", *map(str, windows)]
    argv += (["--config", train_config] if train_config else []) + (["--batch", str(batch)] if batch else [])
    argv += ["--compile"] if compile else []
    argv += ["--context_keep", str(context_keep)] if context_keep is not None else []
    train = model_step.main(argv)
    summary.update({f"train/{k}": v for k, v in train.items() if not isinstance(v, (list, dict))})
    for row in train.get("windows", []):
        for key in ("s_per_clip", "s_per_window", "peak_memory_mb"):
            summary[f"train/windows{row['windows']}_{key}"] = row[key]
    if pipeline:
        from hjepa.bench import pipeline as pipeline_bench

        pipe = pipeline_bench.run(videos or decoding_bench.DEFAULT_VIDEOS, steps=pipeline_steps, workers=pipeline_workers)
        summary.update({f"pipeline/{k}": v for k, v in pipe.items()})
        print(f"pipeline ({pipe['config']}, {pipe['workers']} workers): {pipe['pipeline_clips_per_s']:.1f} clips/s; "
              f"model step alone {pipe['model_clips_per_s']:.1f} clips/s; ratio {pipe['pipeline_over_model']:.2f}")
    if decoding:
        dargv = (["--videos", videos] if videos else []) + (["--quick"] if quick else [])
        dec = decoding_bench.main(dargv)
        summary.update({f"decode/{k}": v for k, v in dec.get("decoders_mean_fps", {}).items()})
        for source, rows in dec.get("loader", {}).items():
            for r in rows:
                summary[f"loader/{source}_workers{r['workers']}_clips_per_s"] = r["clips_per_s"]
    summary["load_avg_end"] = os.getloadavg()[0]
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {Path(out) / 'summary.json'}")
    return summary


def main(argv: list[str]) -> None:
    run_function_cli(benchmark, argv, "hjepa benchmark",
                     "Training step, pipeline and decoding throughput, each beside a reference.")
