"""Regression of predicted onto target representations."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalize_target(x: torch.Tensor) -> torch.Tensor:
    """Layer norm over the feature dimension without affine parameters: ``[..., D] -> [..., D]``.

    Targets are normalised per token (as in V-JEPA) so the loss cannot be lowered by
    shrinking the target encoder's output scale.
    """
    return F.layer_norm(x, x.shape[-1:])


def regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "l1", reduce_dims: int = 0) -> torch.Tensor:
    """Elementwise loss between ``pred`` and ``target`` of the same shape.

    Args:
        kind: ``l1``, ``smooth_l1`` or ``mse``.
        reduce_dims: keep this many leading dims and average the rest (0: a scalar), so the
            caller can take a per-sample minimum (winner-takes-all over latent samples).
    """
    if kind == "l1":
        err = (pred - target).abs()
    elif kind == "smooth_l1":
        err = F.smooth_l1_loss(pred, target, reduction="none")
    elif kind == "mse":
        err = (pred - target).square()
    else:
        raise ValueError(f"unknown loss kind {kind!r}; expected l1, smooth_l1 or mse")
    if reduce_dims == 0:
        return err.mean()
    return err.flatten(reduce_dims).mean(-1)
