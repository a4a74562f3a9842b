"""Collapse statistics, cheap enough to log every step.

- ``feature_std``: mean over dimensions of the per-dimension std across tokens; goes to 0
  when every input maps to the same representation.
- ``effective_rank``: exp of the entropy of the normalised singular values (Roy & Vetterli
  2007); between 1 (a single direction) and min(N, D).
- ``copy_ratio``: prediction error divided by the error of predicting that step t+h looks
  like step t; below 1 means the predictor knows something about the future.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def feature_std(x: torch.Tensor) -> torch.Tensor:
    """``x: [..., D]`` -> scalar mean per-dimension std over all leading positions."""
    x = x.detach().reshape(-1, x.shape[-1]).float()
    if x.shape[0] < 2:
        return torch.zeros((), device=x.device)
    return x.std(dim=0).mean()


@torch.no_grad()
def effective_rank(x: torch.Tensor, max_rows: int = 2048, eps: float = 1e-12) -> torch.Tensor:
    """``x: [..., D]`` -> scalar effective rank of the centred ``[N, D]`` matrix.

    At most ``max_rows`` rows (evenly strided, so the value is deterministic) keep it cheap.
    """
    x = x.detach().reshape(-1, x.shape[-1]).float()
    if x.shape[0] > max_rows:
        x = x[:: -(-x.shape[0] // max_rows)]
    x = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(x)
    p = s / (s.sum() + eps)
    entropy = -(p * torch.log(p + eps)).sum()
    return entropy.exp()


@torch.no_grad()
def copy_ratio(pred: torch.Tensor, target: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """L1(pred, target) / L1(present, target) for tensors of one shape: scalar."""
    err = (pred.detach().float() - target.float()).abs().mean()
    base = (present.float() - target.float()).abs().mean()
    return err / base.clamp_min(1e-8)
