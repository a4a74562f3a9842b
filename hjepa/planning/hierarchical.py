"""Levels 1 and 2 of an HJEPA as a two-timescale world model (section 4.7 of the JEPA paper).

Level 2 imagines its own steps (8 frames each by default) under *macro-actions*, the
``[-1, 1]^macro_dim`` vectors its action encoder makes of a step's primitive actions
(``ActionConfig.macro_dim``), so a planner can search a few macro-actions instead of dozens of
primitive ones. A subgoal is a level-2 state; level 1 then needs a way to say how close its own
imagined steps come to it: :meth:`HierarchicalWorldModel.level2_of` encodes imagined level-1
steps with level 2's target encoder, the way level 2 encodes real ones (its input is level 1's
layer-normed targets, the very space level 1's predictions live in).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hjepa.models.rollout import rollout
from hjepa.planning.world_model import LevelWorldModel, held_still

__all__ = ["HierarchicalWorldModel"]


class HierarchicalWorldModel:
    """Args:
        model: an ``HJEPA`` whose level 1 takes actions and whose level 2 takes macro-actions,
            reading level 1's targets (``level_input: target``).
        chunk: candidates imagined per forward pass.
    """

    def __init__(self, model: torch.nn.Module, chunk: int = 256) -> None:
        if model.num_levels < 2 or model.levels[1].action_encoder is None:
            raise ValueError("hierarchical planning needs a level 2 that takes macro-actions "
                             "(levels[1].actions with macro_dim > 0)")
        if model.config.level_input != "target":
            raise ValueError("hierarchical planning needs level_input=target: level 2 must read the space "
                             "level 1's predictions live in")
        self.model = model.eval()
        self.low = LevelWorldModel(model, chunk)
        self.chunk = chunk
        self.macro_dim = model.config.levels[1].actions.macro_dim
        self.stride = model.config.levels[1].stride
        self.step_frames = model.step_frames(1)
        self._l2_context: Tensor | None = None

    @torch.no_grad()
    def observe(self, clip: Tensor) -> None:
        """The frames seen so far, ``[1, C, T, H, W]``, T a multiple of level 2's step."""
        if clip.shape[2] % self.step_frames:
            raise ValueError(f"a clip of {clip.shape[2]} frames: hierarchical planning needs a multiple of "
                             f"{self.step_frames} (level 2's step), so the present ends a level-2 step")
        self.low.observe(clip)
        level1, level2 = self.model.levels[0], self.model.levels[1]
        self._l1_target = level1.encode_target(clip.to(self.low.device), self.low._context)  # [1, S1, Q1, D1]
        self._l2_context = level2.encode_context(self._l1_target)  # [1, S2, Q2, D2]

    @torch.no_grad()
    def encode_goal(self, goal: Tensor) -> tuple[Tensor, Tensor]:
        """``([Q1, D1], [Q2, D2])``: the goal's last level-1 and level-2 target tokens.

        ``goal``: one image ``[1, C, H, W]`` (held still for a level-2 step) or a clip
        ``[1, C, T, H, W]`` ending in the goal state, T a multiple of level 2's step.
        """
        t1, t2 = self._encode_states(goal)
        return t1[0], t2[0]

    @torch.no_grad()
    def encode_states(self, images: Tensor) -> Tensor:
        """``[N, Q2, D2]``: level 2's target tokens of N states, images ``[N, C, H, W]``, each held
        still for a level-2 step (as a goal is): what a subgoal is compared with to be drawn."""
        return torch.cat([self._encode_states(part)[1] for part in images.split(self.chunk)])

    def _encode_states(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim == 4:
            x = held_still(x, self.step_frames)
        t1 = self.model.levels[0].encode_target(x.to(self.low.device))
        t2 = self.model.levels[1].encode_target(t1)
        return t1[:, -1], t2[:, -1]

    @torch.no_grad()
    def imagine_macro(self, macro: Tensor) -> Tensor:
        """``[N, H, Q2, D2]``: level 2's imagined steps under N macro-action plans ``[N, H, macro_dim]``."""
        if self._l2_context is None:
            raise RuntimeError("call observe(clip) before imagine_macro")
        n, h = macro.shape[:2]
        if macro.shape[-1] != self.macro_dim:
            raise ValueError(f"macro-actions of width {macro.shape[-1]}: this level 2 takes {self.macro_dim}")
        s2 = self._l2_context.shape[1]
        past = torch.zeros(n, s2, self.macro_dim)  # the steps seen: never read by a prediction
        steps = torch.cat([past, macro.float()], dim=1).to(self.low.device)
        out = []
        for i in range(0, n, self.chunk):
            part = steps[i : i + self.chunk]
            ctx = self._l2_context.expand(part.shape[0], -1, -1, -1)
            out.append(rollout(self.model.levels[1], ctx, s2 - 1, h, None, step_actions=part))
        return torch.cat(out)

    @torch.no_grad()
    def level2_of(self, imagined: Tensor) -> Tensor:
        """``[N, Q2, D2]``: level 2's target tokens of the step that imagined level-1 steps make.

        ``imagined``: ``[N, r, Q1, D1]`` the next ``r`` (level 2's stride) level-1 steps, as
        ``LevelWorldModel.imagine`` returns them; they follow the real steps seen.
        """
        n, r = imagined.shape[:2]
        if r != self.stride:
            raise ValueError(f"{r} imagined level-1 steps: one level-2 step is {self.stride}")
        seq = torch.cat([self._l1_target.expand(n, -1, -1, -1), imagined.to(self._l1_target.dtype)], dim=1)
        return self.model.levels[1].encode_target(seq)[:, -1]
