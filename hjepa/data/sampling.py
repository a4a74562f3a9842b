"""Which source frames make a clip.

A clip is ``num_windows`` windows of ``frames_per_window`` frames, ``T = frames_per_window *
num_windows`` frames in all, taken every ``step`` source frames:

* ``frame_step=k``: every k-th source frame;
* ``target_fps=f``: step ``fps / f`` source frames, rounded per frame (``round(t * fps / f)``), so a
  25 fps and a 30 fps video both give ``f`` frames per second of video;
* neither: every frame (``frame_step=1``). Giving both is refused.

A clip spans ``span = round((T - 1) * step) + 1`` source frames.

* Training: one clip, its start drawn uniformly from every start that fits.
* Evaluation: ``clips_per_video`` clips with evenly spaced starts; one clip sits in the middle,
  several go from the first possible start to the last (so they cover the video).

**Short videos** (fewer usable frames than ``span``), one rule, ``short_video``:

* ``"pad"`` (default): the clip starts at the first frame, takes the frames that exist at the same
  step, and repeats the last frame to length ``T``. Evaluation clips of a short video are all that
  one clip.
* ``"skip"``: the video gives no clip (:class:`ShortVideo` is raised; datasets drop and count it).

No rule here retries or loops: a clip is computed in one pass or refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SHORT_VIDEO_RULES = ("pad", "skip")


class ShortVideo(Exception):
    """The video is shorter than one clip and the rule is ``short_video="skip"``."""


@dataclass(frozen=True)
class ClipSampler:
    """Frame-index sampler; see the module docstring for the rules."""

    frames_per_window: int = 8
    num_windows: int = 4
    frame_step: int | None = None
    target_fps: float | None = None
    short_video: str = "pad"

    def __post_init__(self) -> None:
        if self.frames_per_window < 1:
            raise ValueError(f"frames_per_window={self.frames_per_window}: must be >= 1")
        if self.num_windows < 1:
            raise ValueError(f"num_windows={self.num_windows}: must be >= 1")
        if self.frame_step is not None and self.target_fps is not None:
            raise ValueError(
                f"frame_step={self.frame_step} and target_fps={self.target_fps}: give one or the other"
            )
        if self.frame_step is not None and self.frame_step < 1:
            raise ValueError(f"frame_step={self.frame_step}: must be an integer >= 1")
        if self.target_fps is not None and not self.target_fps > 0:
            raise ValueError(f"target_fps={self.target_fps}: must be > 0")
        if self.short_video not in SHORT_VIDEO_RULES:
            raise ValueError(f"short_video={self.short_video!r}: must be one of {SHORT_VIDEO_RULES}")

    @property
    def num_frames(self) -> int:
        """T, frames per clip."""
        return self.frames_per_window * self.num_windows

    def step(self, fps: float) -> float:
        """Source frames between two clip frames for a video at ``fps``."""
        if self.target_fps is not None:
            if not fps > 0:
                raise ValueError(f"target_fps needs the video's fps, got fps={fps}")
            return fps / self.target_fps
        return float(self.frame_step or 1)

    def offsets(self, fps: float) -> torch.Tensor:
        """long [T]: frame offsets of a clip from its first frame."""
        t = torch.arange(self.num_frames, dtype=torch.float64)
        return torch.round(t * self.step(fps)).long()

    def span(self, fps: float) -> int:
        """Source frames one clip covers, first to last inclusive."""
        return int(self.offsets(fps)[-1]) + 1

    def _range(self, num_frames: int, start: int | None, end: int | None) -> tuple[int, int]:
        if num_frames < 1:
            raise ValueError("video has no frame")
        lo = 0 if start is None else max(0, min(int(start), num_frames - 1))
        hi = num_frames if end is None else max(lo + 1, min(int(end), num_frames))
        return lo, hi

    def _padded(self, lo: int, hi: int, fps: float) -> torch.Tensor:
        if self.short_video == "skip":
            raise ShortVideo(f"{hi - lo} frames, a clip needs {self.span(fps)}")
        return torch.clamp(lo + self.offsets(fps), max=hi - 1)

    def train_clip(
        self,
        num_frames: int,
        fps: float,
        generator: torch.Generator | None = None,
        start_frame: int | None = None,
        end_frame: int | None = None,
    ) -> torch.Tensor:
        """long [T]: one clip with a random start in [start_frame, end_frame) of the video."""
        lo, hi = self._range(num_frames, start_frame, end_frame)
        span = self.span(fps)
        if hi - lo < span:
            return self._padded(lo, hi, fps)
        start = lo + int(torch.randint(0, hi - lo - span + 1, (1,), generator=generator))
        return start + self.offsets(fps)

    def eval_clips(
        self,
        num_frames: int,
        fps: float,
        clips_per_video: int = 1,
        start_frame: int | None = None,
        end_frame: int | None = None,
    ) -> torch.Tensor:
        """long [clips_per_video, T]: evenly spaced clips (one clip: the middle one)."""
        if clips_per_video < 1:
            raise ValueError(f"clips_per_video={clips_per_video}: must be >= 1")
        lo, hi = self._range(num_frames, start_frame, end_frame)
        span = self.span(fps)
        if hi - lo < span:
            return self._padded(lo, hi, fps).expand(clips_per_video, -1).clone()
        room = hi - lo - span  # the last start that fits is lo + room
        if clips_per_video == 1:
            starts = torch.tensor([room // 2])
        else:
            starts = torch.round(torch.linspace(0, room, clips_per_video, dtype=torch.float64)).long()
        return lo + starts[:, None] + self.offsets(fps)[None, :]
