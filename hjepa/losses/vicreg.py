"""VICReg variance and covariance terms (Bardes et al. 2022), used on context embeddings."""

from __future__ import annotations

import torch


def variance_loss(z: torch.Tensor, target_std: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """Hinge on the per-dimension std: ``z: [N, D]`` -> scalar; zero when every std >= target_std."""
    std = torch.sqrt(z.float().var(dim=0) + eps)
    return torch.relu(target_std - std).mean()


def covariance_loss(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal covariances over D: ``z: [N, D]`` -> scalar."""
    z = z.float()
    n, d = z.shape
    z = z - z.mean(dim=0)
    cov = (z.T @ z) / max(n - 1, 1)
    off = cov - torch.diag(torch.diag(cov))
    return off.square().sum() / d
