"""The cost a planner minimises: distance to a goal in a level's representation.

Predictions live in the level's layer-normed target space (the space its loss compares in), and
so does a goal encoded by the target encoder, so the cost needs no decoder and no reward: how far
the imagined state is from the goal's encoding, per token, averaged (L1 by default, the training
loss).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["progress", "representation_cost"]


def representation_cost(
    pred: Tensor,
    goal: Tensor,
    norm: Literal["l1", "l2"] = "l1",
    over: Literal["final", "min", "mean"] = "final",
) -> Tensor:
    """Cost of imagined futures against a goal.

    Args:
        pred: ``[N, H, Q, D]`` predicted step tokens of N candidate futures, H steps each.
        goal: ``[Q, D]`` the goal's tokens in the same space (``LevelWorldModel.encode_goal``).
        norm: per-token distance: mean absolute (``l1``) or Euclidean (``l2``) over D, then the
            mean over the Q tokens.
        over: which imagined steps count: the last (``final``, V-JEPA 2-AC's and DINO-WM's
            choice), the closest (``min``: reaching the goal at any step of the plan) or all
            (``mean``: getting close early).

    Returns:
        ``[N]`` costs, lower is better.
    """
    if pred.ndim != 4 or goal.shape != pred.shape[2:]:
        raise ValueError(f"pred [N, H, Q, D] and goal [Q, D] must agree, got {tuple(pred.shape)} and {tuple(goal.shape)}")
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm={norm!r}: must be l1 or l2")
    diff = pred.float() - goal.float()
    per_step = diff.abs().mean(-1) if norm == "l1" else diff.square().sum(-1).sqrt()  # [N, H, Q]
    per_step = per_step.mean(-1)  # [N, H]
    if over == "final":
        return per_step[:, -1]
    if over == "min":
        return per_step.min(dim=1).values
    if over == "mean":
        return per_step.mean(dim=1)
    raise ValueError(f"over={over!r}: must be final, min or mean")


def progress(distances: Tensor) -> float:
    """How well a cost knows the way: ``-tau`` (Kendall's tau-a) between the step index and the
    cost along a path that reaches the goal, ``[P]`` costs of its states before the goal.

    1 when the cost falls at every step towards the goal, 0 when it is unrelated to the steps
    left, -1 when it rises; a planner that follows the cost downhill needs it well above 0.
    """
    d = distances.flatten().double()
    n = d.numel()
    if n < 2:
        raise ValueError(f"progress needs a path of at least 2 states, got {n}")
    i, j = torch.triu_indices(n, n, offset=1)
    return float(-torch.sign(d[j] - d[i]).sum() / (n * (n - 1) / 2))
