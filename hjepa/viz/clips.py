"""One clip to look at: from a video file (any format the readers decode) or a synthetic video.

The clip follows the data part's sampling rules (``ClipSampler`` offsets, the ``pad`` rule
for short videos: repeat the last frame) and its evaluation transform (centre square,
resized), so the model sees what it saw in evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hjepa.data.readers import VideoReadError, open_video, video_info
from hjepa.input_settings import InputSettings
from hjepa.data.sampling import ClipSampler
from hjepa.data.transforms import EvalClipTransform

__all__ = ["VideoClip", "load_clip", "is_synthetic", "clip_windows", "source_fps"]

SYNTHETIC_PREFIX = "synthetic"


@dataclass
class VideoClip:
    """A decoded clip and where its frames come from.

    Attributes:
        frames: ``uint8 [T, H, W, 3]`` at the model's resolution.
        frame_index: ``long [T]`` source frame index of every clip frame (a short video's
            last frame repeats).
        fps: source frame rate.
        source: the file path or ``synthetic:<index>``.
        source_frames: frames in the source video.
        padded: clip frames that repeat the last source frame (short video).
        activity: ``long [T]`` ground-truth activity id per frame (synthetic only).
        activity_names: name of every activity id (synthetic only).
        nominal_index: ``long [T]`` the source frame each clip frame stands for at the sampling
            step, continuing past the end of a short video (the time axis); default ``frame_index``.
    """

    frames: Tensor
    frame_index: Tensor
    fps: float
    source: str
    source_frames: int
    padded: int = 0
    activity: Tensor | None = None
    activity_names: list[str] | None = None
    nominal_index: Tensor | None = None

    @property
    def times(self) -> Tensor:
        """``float64 [T]`` seconds of every clip frame; padded frames continue at the sampling step."""
        index = self.nominal_index if self.nominal_index is not None else self.frame_index
        return index.double() / self.fps

    @property
    def is_padded(self) -> Tensor:
        """``bool [T]``: the frame repeats the last frame of a short video."""
        if self.nominal_index is None:
            return torch.zeros(len(self.frame_index), dtype=torch.bool)
        return self.nominal_index != self.frame_index


def is_synthetic(video: str) -> bool:
    """``synthetic`` or ``synthetic:<index>`` names a generated video instead of a file."""
    return video == SYNTHETIC_PREFIX or video.startswith(SYNTHETIC_PREFIX + ":")


def clip_windows(available: int, frames_per_window: int, step: float, min_frames: int, max_windows: int) -> int:
    """Windows to take: as many as the source covers at ``step``, within [model minimum, ``max_windows``]."""
    fit = int((available - 1) // max(step, 1e-9) + 1) // frames_per_window
    need = math.ceil(min_frames / frames_per_window)
    return max(need, min(fit, max_windows))


def source_fps(video: str, reader: str, trained: InputSettings | None = None) -> float | None:
    """The frame rate of ``video`` (a file's header; the synthetic world's), None when unreadable
    (``load_clip`` then names the problem)."""
    if is_synthetic(video):
        from hjepa.data.synthetic import SyntheticConfig

        return float(SyntheticConfig(**((trained.synthetic if trained else None) or {})).fps)
    try:
        return float(video_info(video, reader).fps)
    except (OSError, VideoReadError):
        return None


def load_clip(
    video: str,
    frames_per_window: int,
    min_frames: int,
    resolution: int,
    frame_step: int = 1,
    num_windows: int | None = None,
    max_windows: int = 8,
    start_frame: int = 0,
    reader: str = "decord",
    synthetic_config: dict | None = None,
    target_fps: float | None = None,
) -> VideoClip:
    """Decode the clip to visualise.

    Args:
        video: a file path, or ``synthetic[:index]`` (index into the synthetic validation split).
        frames_per_window: the model's window length.
        min_frames: the model's shortest clip (``HJEPAConfig.min_frames()``).
        resolution: square side the frames are resized to.
        frame_step: source frames between clip frames (ignored when ``target_fps`` is set).
        num_windows: windows in the clip (default: as many as fit, at most ``max_windows``).
        start_frame: first source frame.
        reader: ``decord`` or ``pyav``.
        synthetic_config: ``SyntheticConfig`` fields for synthetic videos (default config otherwise).
        target_fps: resample the video to this frame rate (the model's: ``InputSettings.fps``).
    Raises:
        FileNotFoundError: no file at ``video``.
        hjepa.data.readers.VideoReadError: the file cannot be decoded.
    """
    if is_synthetic(video):
        return _synthetic_clip(video, frames_per_window, min_frames, resolution, frame_step, num_windows,
                               max_windows, start_frame, synthetic_config, target_fps)
    path = Path(video)
    if not path.is_file():
        raise FileNotFoundError(f"video {video!r}: no such file")
    r = open_video(path, reader)
    try:
        total, fps = int(r.num_frames), float(r.fps)
        idx, nominal = _indices(total, fps, frames_per_window, min_frames, frame_step, num_windows, max_windows,
                                start_frame, target_fps)
        frames = torch.as_tensor(np.asarray(r.get_batch(idx.tolist())))
    finally:
        r.close()
    frames = EvalClipTransform(resolution)(frames)
    return VideoClip(frames=frames, frame_index=idx, fps=fps, source=str(path), source_frames=total,
                     padded=int((idx != nominal).sum()), nominal_index=nominal)


def _indices(total: int, fps: float, fpw: int, min_frames: int, frame_step: int, num_windows: int | None,
             max_windows: int, start_frame: int, target_fps: float | None = None) -> tuple[Tensor, Tensor]:
    """``(frame_index [T], nominal_index [T])``: source frames to decode (clamped to the last
    frame, the ``pad`` rule) and the frames they stand for at the sampling step (every
    ``frame_step``-th frame, or ``fps / target_fps`` frames apart when ``target_fps`` is set)."""
    if total < 1:
        raise ValueError("video has no frame")
    if target_fps is None and frame_step < 1:
        raise ValueError(f"frame_step={frame_step}: must be >= 1")
    sampler = lambda w: ClipSampler(fpw, w, frame_step=None if target_fps else frame_step,  # noqa: E731
                                    target_fps=target_fps, short_video="pad")
    start = max(0, min(int(start_frame), total - 1))
    windows = num_windows or clip_windows(total - start, fpw, sampler(1).step(fps), min_frames, max_windows)
    if windows * fpw < min_frames:
        raise ValueError(f"num_windows={windows}: the model needs at least {min_frames} frames "
                         f"({math.ceil(min_frames / fpw)} windows of {fpw})")
    offsets = sampler(windows).offsets(fps)
    nominal = start + offsets
    return nominal.clamp(max=total - 1), nominal


def _synthetic_clip(video: str, fpw: int, min_frames: int, resolution: int, frame_step: int,
                    num_windows: int | None, max_windows: int, start_frame: int,
                    synthetic_config: dict | None, target_fps: float | None = None) -> VideoClip:
    from hjepa.data.synthetic import NOUNS, VERBS, SyntheticConfig, SyntheticVideos, verb_noun_of

    _, _, which = video.partition(":")
    try:
        index = int(which) if which else 0
    except ValueError:
        raise ValueError(f"video {video!r}: expected 'synthetic' or 'synthetic:<index>'") from None
    cfg = SyntheticConfig(**(synthetic_config or {}))
    vids = SyntheticVideos(cfg)
    val = vids.split_range("validation")
    if not 0 <= index < len(val):
        raise ValueError(f"video {video!r}: the synthetic validation split has {len(val)} videos (0..{len(val) - 1})")
    g = val[index]
    truth = vids.video(g)
    idx, nominal = _indices(cfg.frames_per_video, cfg.fps, fpw, min_frames, frame_step, num_windows, max_windows,
                            start_frame, target_fps)
    frames = torch.as_tensor(vids.render(g, idx.numpy(), video=truth))
    if frames.shape[1] != resolution:
        frames = EvalClipTransform(resolution)(frames)
    names = []
    for a in range(cfg.num_actions):
        verb, noun = verb_noun_of(a, cfg.num_objects)
        names.append(f"{VERBS[verb]} {NOUNS[noun]}")
    return VideoClip(
        frames=frames,
        frame_index=idx,
        fps=cfg.fps,
        source=f"synthetic:{index}",
        source_frames=cfg.frames_per_video,
        padded=int((idx != nominal).sum()),
        activity=torch.as_tensor(truth.activity)[idx],
        activity_names=names,
        nominal_index=nominal,
    )
