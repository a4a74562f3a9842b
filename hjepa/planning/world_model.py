"""Level 1 of an action-conditioned HJEPA as the world model a planner queries.

The agent has seen the last T frames (a whole number of level-1 windows) and stands in the state
the last one shows. A candidate plan is the sequence of L actions to take from that state on
(L a multiple of F, the frames per level-1 step); the world model imagines the L / F level-1 steps
they lead to by rolling level 1 out from the context's last step (``HJEPA.rollout_steps``), every
candidate of a batch in one pass. Under the span rule of ``hjepa.models.actions`` the first
planned action is the action of the last seen frame, and the actions before it do not enter.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["LevelWorldModel"]


def held_still(images: Tensor, frames: int) -> Tensor:
    """``[N, C, frames, H, W]``: images ``[N, C, H, W]`` as clips of a scene that does not move,
    how a goal or a recorded state is shown to a level."""
    return images[:, :, None].expand(-1, -1, frames, -1, -1)


class LevelWorldModel:
    """Args:
        model: an ``HJEPA`` whose level 1 takes actions (``levels[0].actions``), in eval mode.
        chunk: candidates imagined per forward pass (bounds memory).
    """

    def __init__(self, model: torch.nn.Module, chunk: int = 256) -> None:
        if model.levels[0].action_encoder is None:
            raise ValueError("planning needs a model whose level 1 takes actions (levels[0].actions in its config)")
        self.model = model.eval()
        self.chunk = chunk
        self.step_frames = model.step_frames(0)
        self._context: Tensor | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def observe(self, clip: Tensor) -> None:
        """The frames seen so far: ``[1, C, T, H, W]`` normalised, T a multiple of the window."""
        if clip.ndim != 5 or clip.shape[0] != 1:
            raise ValueError(f"observe takes one clip [1, C, T, H, W], got {tuple(clip.shape)}")
        clip = clip.to(self.device)
        self._grid = self.model.patch_grid(clip.shape)
        self._context = self.model.levels[0].encode_context(clip)  # [1, S, Q, D]
        self._frames = clip.shape[2]

    @torch.no_grad()
    def encode_goal(self, goal: Tensor) -> Tensor:
        """``[Q, D]``: the goal's level-1 target tokens (its last step), the space predictions live in.

        Args:
            goal: a clip ``[1, C, T, H, W]`` ending in the goal state, or one image ``[1, C, H, W]``
                (held still for a window: a goal image is a scene that does not move).
        """
        if goal.ndim == 4:
            return self.encode_states(goal)[0]
        return self.model.levels[0].encode_target(goal.to(self.device))[0, -1]

    @torch.no_grad()
    def encode_states(self, images: Tensor) -> Tensor:
        """``[N, Q, D]``: level-1 target tokens of N states, images ``[N, C, H, W]``, each held still
        for a window, as a goal image is."""
        out = []
        for part in images.split(self.chunk):
            clip = held_still(part, self.model.config.frames_per_window)
            out.append(self.model.levels[0].encode_target(clip.to(self.device))[:, -1])
        return torch.cat(out)

    @torch.no_grad()
    def imagine(self, actions: Tensor) -> Tensor:
        """Imagined level-1 steps of N candidate plans.

        Args:
            actions: long ``[N, L]`` ids / float ``[N, L, A]``, the actions from the present state on.

        Returns:
            ``[N, L // F, Q, D]`` predicted layer-normed target tokens of the steps they reach.
        """
        if self._context is None:
            raise RuntimeError("call observe(clip) before imagine(actions)")
        n, length = actions.shape[:2]
        if length % self.step_frames:
            raise ValueError(f"a plan of {length} actions: need a multiple of {self.step_frames} (frames per level-1 step)")
        steps, end = length // self.step_frames, self._context.shape[1] - 1
        before = torch.zeros((n, self._frames - 1, *actions.shape[2:]), dtype=actions.dtype)  # never read
        full = torch.cat([before, actions], dim=1).to(self.device)
        out = []
        for i in range(0, n, self.chunk):
            part = full[i : i + self.chunk]
            context = self._context.expand(part.shape[0], -1, -1, -1)
            out.append(self.model.rollout_steps(context, 0, end, steps, self._grid, actions=part))
        return torch.cat(out)
