"""Where the observed clip lies for each action: pure frame arithmetic, no I/O.

The anticipation protocol (EPIC-KITCHENS-100): the observed clip ends ``tau_a`` seconds before
the action **starts**, and covers ``T`` frames sampled every ``1 / sample_fps`` seconds before
that. All indices are frames of the video at its own ``fps``.

* Last observed frame: ``end = floor((start_s - tau_a) * fps)``, the last frame whose time is at
  or before ``start_s - tau_a``, so no observed frame is closer than ``tau_a`` to the action.
* Frame ``i`` of ``T`` (``i = T-1`` is the last): ``floor((start_s - tau_a - (T-1-i)/sample_fps) * fps)``.
  With ``sample_fps = fps / frame_step`` this is ``end - (T-1-i) * frame_step`` exactly.
* A window reaching before the video's first frame is **clamped**: its negative indices become 0
  (the first frame repeats), and the window is counted as clamped. Likewise, indices past the
  last frame of a video of known length become the last frame.
* An action with ``start_s - tau_a < 0`` has nothing observable: it is **dropped** and counted.

A tiny ``EPS`` absorbs float noise (``0.3 * 30 = 8.999999999999998``) so that times exactly on a
frame boundary land on that frame.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

from hjepa.anticipation.annotations import Segment, VideoTiming

EPS = 1e-6


@dataclass(frozen=True)
class ObservationWindow:
    """Frames to decode for one action.

    ``frames``: source frame indices ``[T]`` (clamped, non-decreasing); ``end_frame``: the last
    observed frame; ``first_frame``: the first index before clamping (negative when clamped);
    ``tau_a``: the anticipation time used (seconds).
    """

    frames: tuple[int, ...]
    end_frame: int
    first_frame: int
    clamped: bool
    tau_a: float


def last_observed_frame(start_s: float, tau_a: float, fps: float) -> int:
    """Index of the last frame at or before ``start_s - tau_a`` (may be negative)."""
    return math.floor((start_s - tau_a) * fps + EPS)


def observation_window(
    start_s: float,
    fps: float,
    tau_a: float,
    num_frames: int,
    sample_fps: float,
    video_frames: int | None = None,
) -> ObservationWindow | None:
    """Frames of the observed clip for an action starting at ``start_s`` seconds.

    Args:
        start_s: action start (seconds from the video's start).
        fps: the video's frame rate.
        tau_a: anticipation time (seconds between the observation's end and the action start).
        num_frames: ``T``, frames in the observed clip.
        sample_fps: rate at which the clip's frames are sampled (frames per second).
        video_frames: frames in the video if known; indices past the end are clamped to it.

    Returns:
        The window, or None when nothing before the action is observable
        (``start_s - tau_a < 0``).
    """
    if fps <= 0 or sample_fps <= 0:
        raise ValueError(f"fps ({fps}) and sample_fps ({sample_fps}) must be > 0")
    if tau_a < 0:
        raise ValueError(f"tau_a must be >= 0, got {tau_a}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    t_end = start_s - tau_a
    if t_end < -EPS / fps:
        return None
    raw = [math.floor((t_end - (num_frames - 1 - i) / sample_fps) * fps + EPS) for i in range(num_frames)]
    last = (video_frames - 1) if video_frames is not None else None
    clamped = raw[0] < 0 or (last is not None and raw[-1] > last)
    frames = tuple(min(max(f, 0), last) if last is not None else max(f, 0) for f in raw)
    return ObservationWindow(frames, raw[-1], raw[0], clamped, tau_a)


def anticipation_steps(tau_a: float, step_s: float) -> int:
    """How many of a level's steps ahead the action starts: ``ceil(tau_a / step_s)``, at least 1.

    The step ``t + n`` covers ``(end + (n-1) * step_s, end + n * step_s]`` after the observation
    end, so ``n = ceil(tau_a / step_s)`` is the step in which the action starts.
    """
    if step_s <= 0:
        raise ValueError(f"step_s must be > 0, got {step_s}")
    return max(1, math.ceil(tau_a / step_s - EPS))


@dataclass(frozen=True)
class WindowPlan:
    """Windows for a list of segments: ``items[i] = (segment, window)`` for observable actions."""

    items: list[tuple[Segment, ObservationWindow]]
    clamped: int
    dropped_unobservable: int
    dropped_no_video_info: int


def plan_windows(
    segments: Sequence[Segment],
    video_info: dict[str, VideoTiming],
    num_frames: int,
    tau_a: float | Sequence[float],
    sample_fps: float | None = None,
    frame_step: int | None = None,
    default_fps: float | None = None,
) -> WindowPlan:
    """Place the observed clip of every segment, counting clamped and dropped ones.

    ``tau_a`` is one value or one value per segment (training draws them from a range, see
    :func:`draw_tau_a`). Exactly one of ``sample_fps`` (a fixed rate in frames/s) or
    ``frame_step`` (every ``frame_step``-th frame of each video, so ``fps / frame_step``) is
    used. A video missing from ``video_info`` takes ``default_fps`` or, if None, is dropped and
    counted in ``dropped_no_video_info``.
    """
    if (sample_fps is None) == (frame_step is None):
        raise ValueError("give exactly one of sample_fps or frame_step")
    taus = [float(tau_a)] * len(segments) if isinstance(tau_a, (int, float)) else list(tau_a)
    if len(taus) != len(segments):
        raise ValueError(f"{len(taus)} tau_a values for {len(segments)} segments")
    items, clamped, unobservable, no_info = [], 0, 0, 0
    for seg, tau in zip(segments, taus):
        info = video_info.get(seg.video_id)
        if info is None:
            if default_fps is None:
                no_info += 1
                continue
            info = VideoTiming(seg.video_id, default_fps)
        rate = sample_fps if sample_fps is not None else info.fps / frame_step  # type: ignore[operator]
        window = observation_window(seg.start_s, info.fps, tau, num_frames, rate, info.num_frames)
        if window is None:
            unobservable += 1
            continue
        clamped += int(window.clamped)
        items.append((seg, window))
    return WindowPlan(items, clamped, unobservable, no_info)


def draw_tau_a(n: int, tau_a: float, tau_a_range: tuple[float, float] | None, rng: random.Random) -> list[float]:
    """``n`` anticipation times: ``tau_a`` each, or uniform draws from ``tau_a_range``."""
    if tau_a_range is None:
        return [tau_a] * n
    lo, hi = tau_a_range
    if not 0 <= lo <= hi:
        raise ValueError(f"tau_a_range must satisfy 0 <= low <= high, got {tau_a_range}")
    return [rng.uniform(lo, hi) for _ in range(n)]
