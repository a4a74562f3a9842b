"""Autoregressive rollout of one level past its trained horizon.

A level predicts at most ``h`` of its steps ahead. To reach further (level 1 compared with a
higher level at the higher level's horizon in seconds; the step in which an action starts,
for anticipation), the level is rolled out: its predictions for steps t+1..t+h are appended to
the context and it predicts again from t+h, until the wanted step is reached.

Predictions live in the layer-normed target space, context tokens in the context encoder's
space; before appending, predictions are mapped into context space by a per-dimension affine
map fitted (least squares) between the clip's own real context tokens up to the context end
and their layer norm. So the rollout reads nothing after its context end and nothing of other
clips in the batch. The map is an approximation of what the encoder would have produced, and a
rollout is expected to drift.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hjepa.losses import normalize_target

__all__ = ["fit_context_map", "rollout"]


def fit_context_map(context: Tensor) -> tuple[Tensor, Tensor]:
    """Per clip and dimension ``(gamma, beta)`` with ``context ~ layer_norm(context) * gamma + beta``.

    Args:
        context: ``[B, S, Q, D]`` real context tokens; every step given is used, so pass only
            the steps the rollout may see.
    Returns:
        ``gamma [B, 1, 1, D]``, ``beta [B, 1, 1, D]`` float32, each clip's from its own tokens
        (no gradient: they are statistics of the clip).
    """
    b, d = context.shape[0], context.shape[-1]
    y = context.detach().reshape(b, -1, d).float()  # [B, S*Q, D]
    x = normalize_target(y)
    xm, ym = x.mean(1, keepdim=True), y.mean(1, keepdim=True)
    var = ((x - xm) ** 2).mean(1, keepdim=True).clamp(min=1e-8)
    gamma = ((x - xm) * (y - ym)).mean(1, keepdim=True) / var
    beta = ym - gamma * xm
    return gamma.reshape(b, 1, 1, d), beta.reshape(b, 1, 1, d)


def rollout(
    level: torch.nn.Module,
    context: Tensor,
    end: int,
    steps: int,
    grid_hw: tuple[int, int] | None = None,
    context_map: tuple[Tensor, Tensor] | None = None,
    step_actions: Tensor | None = None,
) -> Tensor:
    """Predict steps ``end + 1 .. end + steps`` from context steps ``<= end``.

    Args:
        level: a level with ``predict_pairs(context [B, S, Q, D], pairs [P, 2], grid_hw) -> [B, P, Q, D]``
            and ``cfg.horizon`` (the largest ``j`` it can be asked for).
        context: ``[B, S, Q, D]`` the level's real context tokens (only steps ``<= end`` are read).
        end: last context step.
        steps: how many steps past ``end`` to predict (>= 1).
        grid_hw: level 1's patch grid.
        context_map: ``(gamma, beta)`` from :func:`fit_context_map` (default: fitted on each
            clip's own context steps ``<= end``).
        step_actions: ``[B, S_a, A]`` the level's step action vectors (``level.step_actions``)
            covering steps up to ``end + steps`` (None: an action-free rollout).
    Returns:
        ``[B, steps, Q, D]`` the predicted layer-normed targets; gradients flow when enabled.
    """
    horizon = level.cfg.horizon
    if steps < 1:
        raise ValueError(f"rollout needs steps >= 1, got {steps}")
    if not 0 <= end < context.shape[1]:
        raise ValueError(f"rollout context end {end} outside the clip's {context.shape[1]} steps")
    gamma, beta = context_map if context_map is not None else fit_context_map(context[:, : end + 1])
    ctx, preds, done = context[:, : end + 1], [], 0
    while done < steps:
        k = min(horizon, steps - done)
        t = ctx.shape[1] - 1
        pairs = torch.stack([torch.full((k,), t), torch.arange(1, k + 1)], dim=1).to(ctx.device)
        pred = level.predict_pairs(ctx, pairs, grid_hw, step_actions=step_actions)  # [B, k, Q, D]
        preds.append(pred)
        done += k
        if done < steps:
            ctx = torch.cat([ctx, (pred.float() * gamma + beta).to(ctx.dtype)], dim=1)
    return torch.cat(preds, dim=1)
