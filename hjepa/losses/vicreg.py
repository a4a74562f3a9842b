"""VICReg variance and covariance terms (Bardes et al. 2022), used on context embeddings.

Both are batch statistics: under data parallelism they must see the whole batch, not one
rank's share (a GPU recipe with 4 clips per GPU would otherwise estimate a 1024-dimensional
covariance from 8-16 rows). ``gather_across_ranks`` concatenates the ranks' rows with a
gradient that flows back to each rank's own rows.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def gather_across_ranks(z: torch.Tensor) -> torch.Tensor:
    """``z: [N, D]`` on each of W ranks -> ``[W * N, D]`` (rank order), differentiable; ``z`` itself
    when not distributed. Every rank must pass the same N.

    The backward sums every rank's gradient for a rank's rows, so with DDP's gradient average
    the update equals the single-process one on the concatenated batch.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(z.contiguous()), dim=0)


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
