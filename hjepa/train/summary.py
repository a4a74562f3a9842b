"""The run's ``summary.json`` and the table printed when training ends.

``summary.json`` (flat; every value a number, a string or null):

- ``steps``: optimizer steps done; ``wall_time_s``: seconds in ``fit``; ``peak_rss_mb``:
  peak resident memory of the main process (``peak_rss_children_mb``: of loader workers);
  ``gpu_peak_memory_mb``: peak CUDA memory allocated by this rank (GPU runs only).
- ``loss_first`` / ``loss_final``: mean total training loss over the first / last 10 logged steps.
- ``level{k}/{stat}_first`` / ``level{k}/{stat}_final`` for stat in ``loss``, ``pred_loss``,
  ``std`` (per-dimension std of context tokens across the batch's clips), ``eff_rank``
  (effective rank of target step embeddings over the last 4 * D rows), ``copy_ratio``
  (prediction error / copy-the-present error), ``skill`` (1 - prediction error / the best of
  copy-the-present, the batch's per-(slot, token) mean target and copy + slot offset).
- ``val/...``: the last validation metrics, when validation ran.
- ``clips_per_s``: median training throughput over the second half of the run (this rank).
- ``skipped_videos``: distinct unreadable input files skipped (setup check + load time, all
  ranks); ``skipped_samples``: samples dropped at load time because their file failed.
- ``checkpoint``, ``checkpoint_dir``, ``metrics_csv``, ``config``, ``wandb_dir``: paths.
- ``git_revision``, ``world_size``.
"""

from __future__ import annotations

import json
import math
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from hjepa.train.provenance import provenance

_STATS = ("loss", "pred_loss", "std", "eff_rank", "copy_ratio", "skill")


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else None


class SummaryCallback(L.Callback):
    """Keeps the per-step training scalars and writes ``summary.json`` at the end of ``fit``.

    Args:
        run_dir: the run folder.
        window: how many logged steps make ``_first`` / ``_final`` averages.
    """

    def __init__(self, run_dir: str | Path, window: int = 10) -> None:
        self.run_dir = Path(run_dir)
        self.window = window
        self.history: list[dict[str, float]] = []
        self.t0: float | None = None
        self.summary: dict[str, Any] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        row = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/") and v.numel() == 1}
        if row:
            self.history.append(row)

    # The history travels in every checkpoint, so a resumed run's summary covers the whole run:
    # ``_first`` is the first steps of the run, not of the resumed part. Stored as one float
    # tensor [rows, keys] (NaN: not logged at that step) and a list of key names, which
    # torch.load(weights_only=True) reads.
    def state_dict(self) -> dict[str, Any]:
        keys = sorted({k for row in self.history for k in row})
        table = torch.full((len(self.history), len(keys)), float("nan"), dtype=torch.float64)
        for i, row in enumerate(self.history):
            for j, k in enumerate(keys):
                if k in row:
                    table[i, j] = row[k]
        return {"keys": keys, "history": table}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keys, table = state["keys"], state["history"]
        self.history = [{k: float(v) for k, v in zip(keys, row.tolist()) if not math.isnan(v)} for row in table]

    def _series(self, key: str) -> list[float]:
        return [r[key] for r in self.history if key in r]

    def build(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        out: dict[str, Any] = {"steps": int(trainer.global_step), "world_size": int(trainer.world_size)}
        out["wall_time_s"] = round(time.perf_counter() - (self.t0 or time.perf_counter()), 2)
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        out["peak_rss_children_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        if pl_module.device.type == "cuda":
            out["gpu_peak_memory_mb"] = round(torch.cuda.max_memory_allocated(pl_module.device) / 2**20, 1)
        w = self.window
        loss = self._series("train/loss")
        out["loss_first"], out["loss_final"] = _mean(loss[:w]), _mean(loss[-w:])
        num_levels = getattr(getattr(pl_module, "model", None), "num_levels", 0)
        for k in range(1, num_levels + 1):
            for stat in _STATS:
                series = self._series(f"train/level{k}/{stat}")
                out[f"level{k}/{stat}_first"] = _mean(series[:w])
                out[f"level{k}/{stat}_final"] = _mean(series[-w:])
        for key, v in trainer.callback_metrics.items():
            if key.startswith("val/") and v.numel() == 1:
                out[key] = float(v)
        cps = self._series("train/clips_per_s")
        out["clips_per_s"] = round(statistics.median(cps[len(cps) // 2 :]), 3) if cps else None
        out["skipped_videos"], out["skipped_samples"] = skipped_counts(trainer)
        ckpt_dir = self.run_dir / "checkpoints"
        out["checkpoint"] = str(ckpt_dir / "last.ckpt") if (ckpt_dir / "last.ckpt").exists() else None
        out["checkpoint_dir"] = str(ckpt_dir)
        metrics = next(self.run_dir.glob("csv/**/metrics.csv"), None)
        out["metrics_csv"] = str(metrics) if metrics else None
        out["config"] = str(self.run_dir / "config.yaml")
        wandb_dir = self.run_dir / "wandb"
        out["wandb_dir"] = str(wandb_dir) if wandb_dir.exists() else None
        out.update(provenance())
        return out

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # ModelCheckpoint writes last.ckpt only when it saves a periodic checkpoint; a run must
        # always end with one (all ranks call this; rank 0 writes, atomically).
        # weights_only=False here means "with optimizer and loop state" (for resume); the file
        # itself holds tensors and plain values only and is always read with weights_only=True.
        trainer.save_checkpoint(self.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        self.summary = self.build(trainer, pl_module)
        seen = getattr(pl_module, "seen_video_index", None)
        if seen is not None:
            # One file per rank: which samples this rank trained on (checks that ranks split the data).
            (self.run_dir / f"seen_video_index.rank{trainer.global_rank}.txt").write_text(
                "\n".join(map(str, seen)) + "\n"
            )
        if trainer.is_global_zero:
            (self.run_dir / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n")
            print(format_summary(self.summary, self.run_dir))


def skipped_counts(trainer: L.Trainer) -> tuple[int, int]:
    """(distinct unreadable files, samples dropped at load time) over all ranks.

    Every rank checks the same manifest at setup, so files are de-duplicated across ranks
    rather than summed; dropped samples are per rank and do add up.
    """
    dm = trainer.datamodule
    report = dm.skip_report() if dm is not None and hasattr(dm, "skip_report") else {}
    files = set(report.get("skipped_files", []))
    samples = int(report.get("skipped_samples", 0))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, (sorted(files), samples))
        files = set().union(*(set(f) for f, _ in gathered))
        samples = sum(n for _, n in gathered)
    return len(files), samples


def format_summary(summary: dict[str, Any], run_dir: Path) -> str:
    """The table printed at the end of ``hjepa pretrain``."""

    def f(x: Any, nd: int = 3) -> str:
        return "-" if x is None else f"{x:.{nd}f}"

    lines = [
        "",
        f"hjepa pretrain: {summary['steps']} steps in {summary['wall_time_s']:.0f} s "
        f"({f(summary.get('clips_per_s'), 1)} clips/s), peak memory {summary['peak_rss_mb']:.0f} MB, "
        f"skipped videos {summary['skipped_videos']}",
        f"total loss {f(summary['loss_first'])} -> {f(summary['loss_final'])}",
        f"{'level':>6} {'loss first':>11} {'loss final':>11} {'skill':>7} {'copy ratio':>11} {'eff. rank':>10} {'std':>7}",
    ]
    k = 1
    while f"level{k}/loss_final" in summary:
        s = lambda n: summary.get(f"level{k}/{n}")  # noqa: E731
        lines.append(
            f"{k:>6} {f(s('loss_first')):>11} {f(s('loss_final')):>11} {f(s('skill_final')):>7} "
            f"{f(s('copy_ratio_final')):>11} "
            f"{f(s('eff_rank_final'), 1):>10} {f(s('std_final')):>7}"
        )
        k += 1
    lines.append("skill > 0: the level predicts its future better than copying the present, the mean target "
                 "and copy + slot offset (training batches; `hjepa evaluate` scores held-out clips)")
    lines.append(f"run folder: {run_dir}  (summary.json, checkpoints/last.ckpt, config.yaml, csv/)")
    return "\n".join(lines)
