"""``hjepa benchmark``: training-step and decoding throughput, each beside a reference.

Writes ``<out>/summary.json`` (flat): ``train/ours_clips_per_s``, ``train/reference_clips_per_s``,
``train/speedup_vs_reference``, ``train/ours_mfu``, ``train/matmul_peak_gflops``, ...;
``decode/<reader>_fps`` (mean over the shared clips), ``loader/<source>_workers<n>_clips_per_s``.
Ratios are the figures to quote: absolute numbers move with the machine's load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hjepa.cli.function_cli import run_function_cli


def benchmark(
    out: str = "runs/benchmark",
    model: str = "small",
    frames: int = 16,
    size: int = 128,
    batch: int = 4,
    steps: int = 5,
    bf16: bool = False,
    device: str = "cpu",
    decoding: bool = True,
    videos: str | None = None,
    quick: bool = True,
) -> dict:
    """Run the benchmarks.

    Args:
        out: output folder for ``summary.json``.
        model: encoder size for the training step (``small`` = ViT-S/16).
        frames, size, batch: clip frames, frame side and batch of the training step.
        steps: timed training steps (after 2 warm-up steps), median reported.
        bf16: bfloat16 autocast for both models.
        device: where the training step runs: ``cpu``, ``cuda`` or ``cuda:<i>``.
        decoding: also run the decoding / loader benchmark.
        videos: folder of real clips (default: ../shared/data/videos beside the repository).
        quick: decoding on 6 clips and fewer loader batches.
    """
    from hjepa.bench import decoding as decoding_bench
    from hjepa.bench import model_step

    summary: dict = {"load_avg_start": os.getloadavg()[0]}
    argv = ["--model", model, "--frames", str(frames), "--size", str(size), "--batch", str(batch), "--steps", str(steps),
            "--device", device]
    train = model_step.main(argv + (["--bf16"] if bf16 else []))
    summary.update({f"train/{k}": v for k, v in train.items() if not isinstance(v, (list, dict))})
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
    run_function_cli(benchmark, argv, "hjepa benchmark", "Training-step and decoding throughput beside references.")
