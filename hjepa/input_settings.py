"""What a model was trained to see: the one record of its input settings.

A JEPA's representation, and what "one step ahead" means in seconds, depend on how its clips
were made: the frame size, the frames per window and per clip, the frame rate the model saw and
the pixel normalisation. Pretraining writes this record into every checkpoint
(``checkpoint["hjepa"]["input_settings"]``) and ``hjepa export`` into ``config.json``;
``hjepa.load_pretrained`` reads it once and hangs it on the model (``model.input_settings``),
and every task (evaluate, visualize, anticipate) takes its defaults from there.

The frame rate the model saw is ``fps = target_fps`` when training sampled at a fixed rate, or
``source_fps / frame_step`` when it took every n-th frame of videos of ``source_fps``. A video
of another frame rate is resampled to ``fps`` (:meth:`InputSettings.sampling_for`), so a model
trained on 8-fps clips and run on a 30-fps video still predicts the seconds it learned to.

This module is a leaf: it imports nothing from hjepa, so the models, the data and the tasks
can all read it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RECORD_KEY = "input_settings"  # under checkpoint["hjepa"] and in an export's config.json


@dataclass(frozen=True)
class InputSettings:
    """The clips a model was trained on.

    Args:
        resolution: side of the square frames, in pixels.
        frames_per_window: frames per level-1 window (F).
        num_windows: windows per training clip.
        frame_step: every frame_step-th source frame was taken (None when ``target_fps`` set).
        target_fps: clips were sampled at this rate (None when ``frame_step`` set).
        source_fps: frame rate of the training videos (the median over the manifest's videos,
            or the synthetic world's); None when unknown (a checkpoint from before the record).
        mean, std: per-channel normalisation, ``(x / 255 - mean) / std``.
        short_video: rule for videos shorter than a clip (``pad`` or ``skip``).
        synthetic: the synthetic world's settings when the model trained on it, else None.
    """

    resolution: int = 64
    frames_per_window: int = 8
    num_windows: int = 4
    frame_step: Optional[int] = None
    target_fps: Optional[float] = None
    source_fps: Optional[float] = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    short_video: str = "pad"
    synthetic: Optional[dict[str, Any]] = field(default=None, compare=True)

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.resolution, int) and self.resolution >= 1):
            problems.append(f"resolution={self.resolution!r} must be an integer >= 1")
        if not (isinstance(self.frames_per_window, int) and self.frames_per_window >= 1):
            problems.append(f"frames_per_window={self.frames_per_window!r} must be an integer >= 1")
        if not (isinstance(self.num_windows, int) and self.num_windows >= 1):
            problems.append(f"num_windows={self.num_windows!r} must be an integer >= 1")
        if self.frame_step is not None and self.target_fps is not None:
            problems.append(f"frame_step={self.frame_step} and target_fps={self.target_fps}: give one")
        if self.frame_step is not None and not (isinstance(self.frame_step, int) and self.frame_step >= 1):
            problems.append(f"frame_step={self.frame_step!r} must be an integer >= 1")
        for key in ("target_fps", "source_fps"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                problems.append(f"{key}={value!r} must be > 0")
        if len(self.mean) != len(self.std):
            problems.append(f"{len(self.mean)} means but {len(self.std)} stds")
        if problems:
            raise ValueError("input settings: " + "; ".join(problems))

    @property
    def step(self) -> int:
        """Source frames between two clip frames when sampling by step (1 when unset)."""
        return self.frame_step or 1

    @property
    def fps(self) -> Optional[float]:
        """Frames per second of the clips the model saw (None when the source rate is unknown)."""
        if self.target_fps is not None:
            return float(self.target_fps)
        if self.source_fps is None:
            return None
        return float(self.source_fps) / self.step

    def sampling_for(self, video_fps: Optional[float] = None) -> dict[str, Any]:
        """``frame_step`` / ``target_fps`` that give a video the model's frame rate.

        A video at the training videos' own rate keeps the training step (the exact frames the
        model was trained on); any other video is resampled to :attr:`fps`. When the model's rate
        is unknown, the training step is all there is.
        """
        fps = self.fps
        same_rate = video_fps is not None and self.source_fps is not None and abs(video_fps - self.source_fps) < 1e-3
        if fps is None or (same_rate and self.target_fps is None):
            return {"frame_step": self.step, "target_fps": None}
        return {"frame_step": None, "target_fps": fps}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON / ``torch.load(weights_only=True)``-safe values."""
        out = dataclasses.asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "input settings") -> "InputSettings":
        """Strict: an unknown key is refused by name (a record written by a newer hjepa)."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        values = dict(data)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)

    @classmethod
    def from_legacy(cls, data: dict[str, Any], frames_per_window: int) -> "InputSettings":
        """The record of a checkpoint written before it existed, from its data-module arguments.

        Those checkpoints kept Lightning's ``datamodule_hyper_parameters``; the source frame
        rate is known only for the synthetic world (whose rate is part of its settings).
        """
        synthetic = data.get("synthetic")
        if dataclasses.is_dataclass(synthetic):
            synthetic = dataclasses.asdict(synthetic)
        elif not isinstance(synthetic, dict):
            synthetic = None
        on_synthetic = data.get("train_manifests") is None
        if synthetic is None and on_synthetic:
            synthetic = {}  # the default world
        source_fps = float(synthetic.get("fps", 8.0)) if synthetic is not None else None
        frame_step, target_fps = data.get("frame_step"), data.get("target_fps")
        return cls(
            resolution=int(data.get("resolution") or 64),
            frames_per_window=int(data.get("frames_per_window") or frames_per_window),
            num_windows=int(data.get("num_windows") or 4),
            frame_step=int(frame_step) if frame_step is not None else None,
            target_fps=float(target_fps) if target_fps is not None else None,
            source_fps=source_fps,
            short_video=str(data.get("short_video") or "pad"),
            synthetic=synthetic,
        )
