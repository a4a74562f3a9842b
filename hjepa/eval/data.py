"""Evaluation data: held-out batches made as the model's training clips were (its input record)."""

from __future__ import annotations

from typing import Any

from hjepa.input_settings import InputSettings

__all__ = ["eval_datamodule"]


def eval_datamodule(
    model_config: Any,
    data: str | None,
    trained: InputSettings | None,
    reader: str = "decord",
    resolution: int | None = None,
    frame_step: int | None = None,
    num_windows: int | None = None,
    clips_per_video: int = 1,
    batch_size: int = 8,
    num_workers: int = 0,
    seed: int = 0,
    actions: str | None = None,
):
    """A ``VideoDataModule`` whose validation loader yields the held-out clips.

    Args:
        model_config: the model's ``HJEPAConfig`` (window length, shortest clip).
        data: a manifest (CSV, space-separated list or folder) or None for the synthetic
            validation split (generated with the checkpoint's synthetic settings).
        trained: the model's input record (``model.input_settings``; None: defaults); explicit
            arguments win. Videos of a manifest are resampled to the frame rate the model saw.
        actions: the manifest's per-frame action file (batches then carry ``actions``).
    """
    from hjepa.data.synthetic import SyntheticConfig
    from hjepa.train.datamodule import VideoDataModule

    fpw = model_config.frames_per_window
    need = -(-model_config.min_frames() // fpw)
    recorded_windows = trained.num_windows if trained is not None else need
    trained = trained or InputSettings(frames_per_window=fpw)
    if trained.frames_per_window != fpw:
        raise ValueError(f"checkpoint data frames_per_window={trained.frames_per_window} differs from the "
                         f"model's frames_per_window={fpw}")
    windows = num_windows or recorded_windows
    if windows * fpw < model_config.min_frames():
        raise ValueError(f"num_windows={windows}: this model needs at least {need} windows of {fpw} frames")
    if frame_step is not None:
        step, target_fps = frame_step, None
    elif data is None:  # the synthetic world is read at its own rate: the training step
        step, target_fps = trained.frame_step, trained.target_fps
    else:
        sampling = trained.sampling_for(None)
        step, target_fps = sampling["frame_step"], sampling["target_fps"]
    res = resolution or trained.resolution
    common = dict(
        reader=reader, frames_per_window=fpw, num_windows=windows, frame_step=step, target_fps=target_fps,
        resolution=res, batch_size=batch_size, num_workers=num_workers, clips_per_video=clips_per_video,
        short_video=trained.short_video, seed=seed,
    )
    if actions is not None:
        if data is None:
            raise ValueError("actions go with a manifest of videos, not the synthetic world")
        return VideoDataModule(train_manifests=data, val_manifests=data, train_actions=actions, val_actions=actions,
                               hflip=False, **common)
    if data is None:
        syn = SyntheticConfig(**(trained.synthetic or {}))
        return VideoDataModule(synthetic=syn, **common)
    # The DataModule wants a training set with a validation set: the same manifest serves
    # (only its validation loader is used, with the evaluation transform).
    return VideoDataModule(train_manifests=data, val_manifests=data, **common)
