"""Decoding the observed clips: video paths, per-video fps, resize + centre crop, a Dataset.

Bad videos (missing, unreadable) are never retried: the header read skips them with one warning
naming the file, and :class:`ObservedClips` returns an error record that the loop counts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from hjepa.anticipation.annotations import Segment, VideoTiming
from hjepa.anticipation.windows import ObservationWindow

log = logging.getLogger(__name__)


def video_path(video_dir: str | Path, pattern: str, segment: Segment) -> Path:
    """Path of a segment's video: ``video_dir / pattern`` with ``{video_id}`` / ``{participant_id}`` filled."""
    participant = segment.participant_id or segment.video_id.split("_")[0]
    return Path(video_dir) / pattern.format(video_id=segment.video_id, participant_id=participant)


@dataclass
class HeaderReport:
    """Videos whose header could not be read: ``skipped_files`` names them with the reason."""

    skipped_videos: int
    skipped_files: list[str]


def read_video_headers(paths: dict[str, Path], reader: str = "decord") -> tuple[dict[str, VideoTiming], HeaderReport]:
    """fps and length of every video from its header: ``{video_id: VideoTiming}`` plus what was skipped."""
    from hjepa.data.readers import VideoReadError, video_info

    table, skipped = {}, []
    for vid, path in sorted(paths.items()):
        try:
            info = video_info(path, reader)
        except (VideoReadError, ValueError) as err:
            log.warning("skipping video %s: %s", path, err)
            skipped.append(f"{path}: {err}")
            continue
        table[vid] = VideoTiming(vid, info.fps, info.num_frames / info.fps)
    return table, HeaderReport(len(skipped), skipped)


def resize_crop(frames: Tensor, size: int) -> Tensor:
    """uint8 ``[T, H, W, C]`` -> uint8 ``[T, size, size, C]``: the evaluation crop pretraining uses.

    Centre square, resized (``hjepa.data.transforms.EvalClipTransform``), so anticipation sees
    frames prepared as the backbone saw them.
    """
    from hjepa.data.transforms import EvalClipTransform

    return EvalClipTransform(size)(frames)


class ObservedClips(Dataset):
    """Item i: ``{"clip": uint8 [T, S, S, C], "index": i}`` or ``{"error": str, "index": i}``.

    Args:
        items: (segment, window) pairs from ``plan_windows``.
        paths: video path of every video id.
        crop_size: output side S.
        reader: ``decord`` or ``pyav``.
    """

    def __init__(self, items: Sequence[tuple[Segment, ObservationWindow]], paths: dict[str, Path], crop_size: int,
                 reader: str = "decord") -> None:
        self.items = list(items)
        self.paths = paths
        self.crop_size = crop_size
        self.reader = reader
        self._open: tuple[str, Any] | None = None  # one reader per worker, reused while the video repeats

    def __len__(self) -> int:
        return len(self.items)

    def _video(self, video_id: str):
        from hjepa.data.readers import open_video

        if self._open is None or self._open[0] != video_id:
            if self._open is not None:
                self._open[1].close()
            self._open = None
            self._open = (video_id, open_video(self.paths[video_id], self.reader))
        return self._open[1]

    def __getitem__(self, i: int) -> dict[str, Any]:
        from hjepa.data.readers import VideoReadError

        seg, window = self.items[i]
        try:
            video = self._video(seg.video_id)
            # The planner clamps to the length it was told; the decoder's count is the truth.
            last = video.num_frames - 1
            frames = video.get_batch([min(f, last) for f in window.frames])
        except (VideoReadError, ValueError, KeyError, RuntimeError) as err:
            return {"error": f"{self.paths.get(seg.video_id, seg.video_id)}: {err}", "index": i}
        return {"clip": resize_crop(frames, self.crop_size), "index": i}

    def __getstate__(self) -> dict[str, Any]:
        # Open readers are not picklable; each worker opens its own.
        state = self.__dict__.copy()
        state["_open"] = None
        return state


def collate_clips(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the good clips (uint8 ``[B, T, S, S, C]``, ``index`` long ``[B]``); list the errors."""
    good = [b for b in batch if "clip" in b]
    return {
        "clip": torch.stack([b["clip"] for b in good]) if good else None,
        "index": torch.tensor([b["index"] for b in good], dtype=torch.long),
        "errors": [b["error"] for b in batch if "error" in b],
    }


def worker_count(requested: int) -> int:
    """Decoding workers: never more than the CPUs this process may use."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(requested, cpus))
