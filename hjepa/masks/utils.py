"""Token selection with index masks."""

from __future__ import annotations

import torch
from torch import Tensor


def apply_masks(x: Tensor, masks: Tensor | list[Tensor] | tuple[Tensor, ...]) -> Tensor:
    """Keep the tokens a mask lists, for every mask set, stacked along the batch.

    Args:
        x: [B, N, D] tokens in raster order.
        masks: long [B, K] token indices (into N), or a list of M such tensors (same K).

    Returns:
        [B * M, K, D]; rows ``m * B .. (m + 1) * B - 1`` hold mask set ``m``.
    """
    if isinstance(masks, Tensor):
        masks = [masks]
    out = []
    for m in masks:
        if m.ndim != 2 or m.shape[0] != x.shape[0]:
            raise ValueError(
                f"mask shape {tuple(m.shape)} does not match tokens {tuple(x.shape)}: expected [B={x.shape[0]}, K]"
            )
        if out and m.shape[1] != out[0].shape[1]:
            raise ValueError(f"mask sets differ in K ({out[0].shape[1]} vs {m.shape[1]}); stacking needs the same K")
        out.append(torch.gather(x, 1, m.to(x.device).unsqueeze(-1).expand(-1, -1, x.shape[-1])))
    return out[0] if len(out) == 1 else torch.cat(out, dim=0)
