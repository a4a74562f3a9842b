"""Evaluation data: the settings a checkpoint was trained with, and the held-out batches."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

__all__ = ["checkpoint_data_config", "eval_datamodule"]

# DataModule arguments that must match training for the model to see what it learned on.
_SAMPLING_KEYS = ("frames_per_window", "num_windows", "frame_step", "target_fps", "resolution", "synthetic",
                  "short_video")


def checkpoint_data_config(ckpt: str | Path) -> dict[str, Any]:
    """The data settings a checkpoint was trained with, as far as it records them.

    Reads ``checkpoint["hjepa"]["data_config"]`` or Lightning's ``datamodule_hyper_parameters``
    (a training checkpoint), or ``config.data_config`` in an export folder's ``config.json``.
    Returns ``{}`` when nothing is recorded; ``synthetic`` is returned as a plain dict.
    """
    path = Path(ckpt)
    try:
        if path.is_dir():
            meta: Any = json.loads((path / "config.json").read_text())
            cfg = meta.get("config", meta) if isinstance(meta, dict) else None
            data = cfg.get("data_config") if isinstance(cfg, dict) else None
        else:
            from hjepa.loading import read_checkpoint

            raw = read_checkpoint(path)
            data = (raw.get("hjepa") or {}).get("data_config") or raw.get("datamodule_hyper_parameters")
    except (OSError, ValueError, json.JSONDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    out = {k: data[k] for k in _SAMPLING_KEYS if k in data and data[k] is not None}
    syn = out.get("synthetic")
    if dataclasses.is_dataclass(syn):
        out["synthetic"] = dataclasses.asdict(syn)
    elif syn is not None and not isinstance(syn, dict):
        out.pop("synthetic")
    return out


def eval_datamodule(
    model_config: Any,
    data: str | None,
    trained: dict[str, Any],
    reader: str = "decord",
    resolution: int | None = None,
    frame_step: int | None = None,
    num_windows: int | None = None,
    clips_per_video: int = 1,
    batch_size: int = 8,
    num_workers: int = 0,
    seed: int = 0,
):
    """A ``VideoDataModule`` whose validation loader yields the held-out clips.

    Args:
        model_config: the model's ``HJEPAConfig`` (window length, shortest clip).
        data: a manifest (CSV, space-separated list or folder) or None for the synthetic
            validation split (generated with the checkpoint's synthetic settings).
        trained: :func:`checkpoint_data_config` of the checkpoint; explicit arguments win.
    """
    from hjepa.data.synthetic import SyntheticConfig
    from hjepa.train.datamodule import VideoDataModule

    fpw = model_config.frames_per_window
    if trained.get("frames_per_window") not in (None, fpw):
        raise ValueError(f"checkpoint data frames_per_window={trained['frames_per_window']} differs from the "
                         f"model's frames_per_window={fpw}")
    need = -(-model_config.min_frames() // fpw)
    windows = num_windows or int(trained.get("num_windows") or need)
    if windows * fpw < model_config.min_frames():
        raise ValueError(f"num_windows={windows}: this model needs at least {need} windows of {fpw} frames")
    step = frame_step if frame_step is not None else trained.get("frame_step")
    target_fps = None if frame_step is not None else trained.get("target_fps")
    res = resolution or int(trained.get("resolution") or 64)
    common = dict(
        reader=reader, frames_per_window=fpw, num_windows=windows, frame_step=step, target_fps=target_fps,
        resolution=res, batch_size=batch_size, num_workers=num_workers, clips_per_video=clips_per_video,
        short_video=trained.get("short_video", "pad"), seed=seed,
    )
    if data is None:
        syn = SyntheticConfig(**(trained.get("synthetic") or {}))
        return VideoDataModule(synthetic=syn, **common)
    # The DataModule wants a training set with a validation set: the same manifest serves
    # (only its validation loader is used, with the evaluation transform).
    return VideoDataModule(train_manifests=data, val_manifests=data, **common)
