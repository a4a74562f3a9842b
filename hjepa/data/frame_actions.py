"""Per-frame actions beside videos: the input of an action-conditioned level 1.

The file is a CSV with columns ``video_id,frame,action`` (the BabyAI recipe's
``frame_actions_<split>.csv``): one row per frame of a video, ``action`` the integer id of the
action taken in the state that frame shows (the one leading to the next frame). A video's
``video_id`` is its file name without the extension, as in the recipe's manifests.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

import torch

__all__ = ["read_frame_actions", "clip_actions", "video_id_of"]


def video_id_of(path: str) -> str:
    """The id a video's actions are filed under: its file name without the extension."""
    return Path(path).stem


def read_frame_actions(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``{video_id: long [n_frames]}``, every frame of every video listed once, in order.

    Raises:
        ValueError: a missing column, a non-integer field, or a video whose frames are not
            exactly 0..n-1 (a gap or a repeat), naming the file and the video.
    """
    per: dict[str, dict[int, int]] = defaultdict(dict)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"video_id", "frame", "action"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: frame-action file lacks column(s) {', '.join(sorted(missing))} "
                             "(need video_id,frame,action)")
        for line, row in enumerate(reader, start=2):
            try:
                frame, action = int(row["frame"]), int(row["action"])
            except ValueError:
                raise ValueError(f"{path}:{line}: frame and action must be integers, got "
                                 f"{row['frame']!r}, {row['action']!r}") from None
            if frame in per[row["video_id"]]:
                raise ValueError(f"{path}:{line}: video {row['video_id']!r} lists frame {frame} twice")
            per[row["video_id"]][frame] = action
    out = {}
    for vid, frames in per.items():
        n = len(frames)
        if set(frames) != set(range(n)):
            raise ValueError(f"{path}: video {vid!r} lists {n} frames that are not 0..{n - 1}")
        out[vid] = torch.tensor([frames[i] for i in range(n)], dtype=torch.long)
    return out


def clip_actions(actions: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """The actions of a clip's frames: long [T] from a video's long [n] and frame indices [T].

    A frame past the video's last listed action (a clip padded by repeating the last frame) gets
    the last action: the video ends there.
    """
    return actions[frames.clamp(max=actions.shape[0] - 1)]
