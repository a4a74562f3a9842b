"""The whole ``hjepa pretrain`` pipeline on real decoded video against its model step alone.

The pipeline figure is the clips/s ``hjepa pretrain`` itself reports (``summary.json``'s
``clips_per_s``: the median over the second half of the run of the batch size divided by the
time between two training steps, so decoding, augmentation, collation and Lightning's own work
are inside it) for a manifest of real videos. The model figure is
:class:`hjepa.bench.train_step.HJEPATrainStep` on a batch of the same shape, in the same
process, right after. ``pipeline_over_model`` near 1 means the loader keeps up; well below 1
means the step waits for data.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from hjepa.bench.model_step import config_setup, time_interleaved
from hjepa.bench.train_step import HJEPATrainStep, random_batch
from hjepa.data.manifests import scan_folder, write_csv_manifest

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "default.yaml"


def run(videos: str | Path, config: str | Path = DEFAULT_CONFIG, steps: int = 40, workers: int = 0,
        model_repeats: int = 5) -> dict[str, Any]:
    """Train ``steps`` steps of ``config`` on the videos under ``videos`` (wandb off, no
    validation, no checkpoint but the last), then time the model step alone."""
    from hjepa.cli import pretrain

    with tempfile.TemporaryDirectory(prefix="hjepa-pipeline-") as tmp:
        manifest = Path(tmp) / "manifest.csv"
        write_csv_manifest(manifest, scan_folder(Path(videos))[0], relative=False)
        t0 = time.perf_counter()
        summary = pretrain.main([
            "--config", str(config), f"--data.train_manifests={manifest}", f"--data.num_workers={workers}",
            f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0", "--trainer.log_every_n_steps=1",
            "--trainer.enable_progress_bar=false", f"--checkpoint_every={steps}", "--logger.wandb=false",
            f"--run_dir={Path(tmp) / 'run'}",
        ])
        wall = time.perf_counter() - t0
    setup = config_setup(config)
    step = HJEPATrainStep(setup.arch, setup.optim, setup.gradient_clip_val, torch.device("cpu"))
    batch = random_batch(setup.batch, setup.frames, setup.size, torch.device("cpu"))
    seconds = time_interleaved({"model": step}, batch, torch.device("cpu"), warmup=2, repeats=model_repeats)["model"]
    model_cps = setup.batch / statistics.median(seconds)
    pipeline_cps = summary.get("clips_per_s") or 0.0
    return {
        "config": str(config), "videos": str(videos), "workers": workers, "steps": steps,
        "unreadable_videos": summary.get("skipped_videos", 0), "wall_s": wall,
        "pipeline_clips_per_s": pipeline_cps, "model_clips_per_s": model_cps,
        "pipeline_over_model": pipeline_cps / model_cps,
    }
