"""Does a model predict a clip longer than its training clips as well past the training length
as within it? A predictor with absolute time or an unbounded context does not: its queries meet
step indices or offsets it never saw, and its predictions wash out."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LengthErrors", "length_errors"]


@dataclass
class LengthErrors:
    """One level's mean L1 between prediction and target, split by where the prediction sits.

    Attributes:
        inside: predictions whose target step ends within the first ``trained_frames`` frames.
        past: predictions whose context already ends past ``trained_frames``.
        ratio: ``past / inside`` (1: as good past the training length as within it).
    """

    inside: float
    past: float
    ratio: float


@torch.no_grad()
def length_errors(model: torch.nn.Module, clip: Tensor, trained_frames: int) -> list[LengthErrors]:
    """Per level, the prediction error inside vs past the training length.

    Args:
        model: an ``HJEPA``.
        clip: ``[B, C, T, H, W]`` model input, T well past ``trained_frames``.
        trained_frames: frames of the clips the model was trained on.
    """
    out = []
    for p in model.predict(clip):
        err = (p.pred.float() - p.target.float()).abs().mean(dim=(0, 3, 4))  # [S, h]
        inside = p.valid & (p.target_end_frames < trained_frames)
        past = p.valid & (p.context_end_frames[:, None] >= trained_frames)
        if not inside.any() or not past.any():
            raise ValueError(f"a clip of {clip.shape[2]} frames has no prediction both inside and past "
                             f"{trained_frames} frames at every level: use a longer clip")
        a, b = float(err[inside].mean()), float(err[past].mean())
        out.append(LengthErrors(a, b, b / a if a > 0 else float("inf")))
    return out
