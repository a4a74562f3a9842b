"""Actions as an input of a level's future predictor (level 1: primitive, above: macro-actions).

A clip's actions come one per frame: ``actions[:, f]`` is the action taken in the state that
frame f shows, the one that leads to frame f+1. Level-1 step s spans frames ``s*F .. s*F+F-1``
(F = frames per step), so the actions that lead into its frames are those of frames
``s*F-1 .. s*F+F-2``: the step's *span*, the last action of the step before and all of its own
but the last. The span of step 0 starts before the clip; that frame's action is unknown and
embeds as zeros.

The future predictor's query for step t+j gets the spans of steps t+1..t+j: every action taken
from the context's last frame (included: the action chosen in the present state) up to the
target's last frame, and none after it. Context tokens get no actions: what the past actions did
is in the context's frames already.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from hjepa.models.config import ActionConfig

__all__ = ["ActionEncoder"]


class ActionEncoder(nn.Module):
    """Per-frame actions -> one vector per level-1 step (its span's frame embeddings, in order).

    Args:
        cfg: the level's ``ActionConfig`` (discrete ids or continuous vectors).
        step_frames: F, frames one level-1 step spans.

    ``out_dim`` = F * ``cfg.embed_dim``: a span's embeddings are concatenated, not summed, so the
    order of the actions inside a step counts (turn then move is not move then turn). With
    ``cfg.macro_dim`` (levels >= 2) they are then mapped to a macro-action,
    ``tanh(linear(...))``, and ``out_dim`` = ``macro_dim``.
    """

    def __init__(self, cfg: ActionConfig, step_frames: int) -> None:
        super().__init__()
        if not cfg.enabled:
            raise ValueError("ActionEncoder needs actions.num_classes > 0 or actions.dim > 0")
        self.cfg = cfg
        self.step_frames = step_frames
        self.out_dim = cfg.macro_dim or step_frames * cfg.embed_dim
        if cfg.num_classes:
            self.embed: nn.Module = nn.Embedding(cfg.num_classes, cfg.embed_dim)
        else:
            self.embed = nn.Linear(cfg.dim, cfg.embed_dim)
        self.macro = nn.Linear(step_frames * cfg.embed_dim, cfg.macro_dim) if cfg.macro_dim else None

    def check(self, actions: torch.Tensor) -> None:
        """Refuse actions of the wrong kind, shape or range, naming what was expected."""
        cfg = self.cfg
        if cfg.num_classes:
            if actions.dtype not in (torch.int64, torch.int32) or actions.ndim != 2:
                raise ValueError(f"discrete actions must be integer ids [B, T], got {actions.dtype} "
                                 f"{tuple(actions.shape)}")
            if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= cfg.num_classes):
                raise ValueError(f"action ids must lie in 0..{cfg.num_classes - 1}, got "
                                 f"{int(actions.min())}..{int(actions.max())}")
        elif actions.ndim != 3 or actions.shape[-1] != cfg.dim or not actions.is_floating_point():
            raise ValueError(f"continuous actions must be float [B, T, {cfg.dim}], got {actions.dtype} "
                             f"{tuple(actions.shape)}")

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        """Args:
            actions: long [B, T] ids or float [B, T, A] vectors, one per clip frame.

        Returns:
            [B, S, out_dim] with S = (T + 1) // F, the steps whose whole span is given: step s
            holds the embeddings of frames s*F-1 .. s*F+F-2 (frame -1: zeros). A frame past
            ``S*F - 2`` leads beyond the last whole step: unused.
        """
        self.check(actions)
        b, t = actions.shape[:2]
        s = (t + 1) // self.step_frames
        if s < 1:
            raise ValueError(f"{t} frame actions cover no whole step of {self.step_frames} frames")
        e = self.embed(actions)  # [B, T, E]
        e = F.pad(e, (0, 0, 1, 0))  # frame -1, before the clip: unknown
        spans = e[:, : s * self.step_frames].reshape(b, s, self.step_frames * self.cfg.embed_dim)
        return spans if self.macro is None else torch.tanh(self.macro(spans))
