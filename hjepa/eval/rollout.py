"""Autoregressive rollout of one level past its trained horizon.

A level predicts at most ``h`` of its steps ahead. To compare level 1 with a higher level at
the higher level's (longer) horizon in seconds, level 1 is rolled out: its predictions for
steps t+1..t+h are appended to the context and it predicts again from t+h, until the wanted
step is reached.

Predictions live in the layer-normed target space, context tokens in the context
encoder's space; before appending, predictions are mapped into context space by a
per-dimension affine map fitted (least squares) between the real context tokens and their
layer norm. This is an approximation of what the encoder would have produced, and a rollout
is expected to drift: that is what the comparison measures.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hjepa.eval.metrics import normalize_targets

__all__ = ["fit_context_map", "rollout"]


def fit_context_map(context: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension ``(gamma, beta)`` with ``context ~ layer_norm(context) * gamma + beta``.

    Args:
        context: ``[B, S, Q, D]`` real context tokens.
    Returns:
        ``gamma [D]``, ``beta [D]``.
    """
    y = context.reshape(-1, context.shape[-1]).float()
    x = normalize_targets(y)
    xm, ym = x.mean(0), y.mean(0)
    var = ((x - xm) ** 2).mean(0).clamp(min=1e-8)
    gamma = ((x - xm) * (y - ym)).mean(0) / var
    return gamma, ym - gamma * xm


@torch.no_grad()
def rollout(
    level: torch.nn.Module,
    context: Tensor,
    end: int,
    ahead: int,
    horizon: int,
    grid_hw: tuple[int, int] | None = None,
    context_map: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Predict step ``end + ahead`` from context steps ``<= end``, rolling out when ``ahead > horizon``.

    Args:
        level: a level with ``predict_pairs(context [B, S, Q, D], pairs [P, 2], grid_hw) -> [B, P, Q, D]``.
        context: ``[B, S, Q, D]`` the level's real context tokens (only steps ``<= end`` are read).
        end: last context step.
        ahead: how many steps past ``end`` to predict (>= 1).
        horizon: the level's trained horizon h (largest ``j`` it can be asked for).
        grid_hw: level 1's patch grid.
        context_map: ``(gamma, beta)`` from :func:`fit_context_map` (default: fitted on ``context``).
    Returns:
        ``[B, Q, D]`` the predicted layer-normed target of step ``end + ahead``.
    """
    if ahead < 1 or horizon < 1:
        raise ValueError(f"rollout needs ahead >= 1 and horizon >= 1, got ahead={ahead}, horizon={horizon}")
    if not 0 <= end < context.shape[1]:
        raise ValueError(f"rollout context end {end} outside the clip's {context.shape[1]} steps")
    gamma, beta = context_map if context_map is not None else fit_context_map(context)
    ctx = context[:, : end + 1]
    cur = end
    dev = context.device
    while ahead - (cur - end) > horizon:
        pairs = torch.stack([torch.full((horizon,), cur, device=dev), torch.arange(1, horizon + 1, device=dev)], 1)
        pred = level.predict_pairs(ctx, pairs, grid_hw)  # [B, h, Q, D]
        ctx = torch.cat([ctx, (pred.float() * gamma + beta).to(ctx.dtype)], dim=1)
        cur += horizon
    j = ahead - (cur - end)
    pairs = torch.tensor([[cur, j]], device=dev)
    return level.predict_pairs(ctx, pairs, grid_hw)[:, 0]
