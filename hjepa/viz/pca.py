"""Feature maps as colours: the top three principal components of patch features as RGB.

One projection is fitted (on the target features) and then applied unchanged to both the
target and the prediction, so the same colour means the same feature on both sides of a
comparison. Colour ranges are fixed at fit time from robust quantiles, for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["PCAProjector", "fit_pca", "pca_rgb_pair"]


@dataclass
class PCAProjector:
    """A fitted linear projection ``[..., D] -> [..., k]`` and its colour range.

    Attributes:
        mean: ``[D]`` feature mean of the fit data.
        components: ``[k, D]`` unit principal directions, largest variance first; the sign of
            each is fixed so that its largest-magnitude loading is positive (deterministic).
        low, high: ``[k]`` projection quantiles of the fit data that map to 0 and 1.
        explained: ``[k]`` share of the fit data's variance on each component.
    """

    mean: Tensor
    components: Tensor
    low: Tensor
    high: Tensor
    explained: Tensor

    def project(self, x: Tensor) -> Tensor:
        """``x: [..., D]`` -> ``[..., k]`` coordinates on the fitted components."""
        if x.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"features have width {x.shape[-1]} but the projection was fitted on {self.mean.shape[0]}")
        return (x.float() - self.mean) @ self.components.T

    def to_rgb(self, x: Tensor) -> Tensor:
        """``x: [..., D]`` -> ``float [..., 3]`` in [0, 1] (missing components stay mid-grey)."""
        z = (self.project(x) - self.low) / (self.high - self.low).clamp(min=1e-8)
        z = z.clamp(0.0, 1.0)
        if z.shape[-1] < 3:
            pad = torch.full((*z.shape[:-1], 3 - z.shape[-1]), 0.5)
            z = torch.cat([z, pad], -1)
        return z

    def to_uint8(self, x: Tensor) -> Tensor:
        """``x: [..., D]`` -> ``uint8 [..., 3]``."""
        return (self.to_rgb(x) * 255.0).round().to(torch.uint8)


def fit_pca(features: Tensor, n_components: int = 3, quantile: float = 0.01) -> PCAProjector:
    """Fit principal components on ``features [..., D]`` (all leading dims are samples).

    Args:
        n_components: how many components to keep (at most ``min(N, D)``).
        quantile: the colour range spans the ``quantile`` .. ``1 - quantile`` projections, so
            a few outlier tokens do not wash out the map.
    """
    x = features.reshape(-1, features.shape[-1]).float()
    if x.shape[0] < 2:
        raise ValueError(f"PCA needs at least 2 feature vectors, got {x.shape[0]}")
    mean = x.mean(0)
    xc = x - mean
    # Full SVD of the centred data: exact and cheap at feature-map sizes (N ~ 10^3-10^4).
    _, s, vh = torch.linalg.svd(xc.double(), full_matrices=False)
    k = min(n_components, vh.shape[0])
    comps = vh[:k].float()
    sign = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    comps = comps * torch.where(sign == 0, torch.ones_like(sign), sign)
    var = s.float() ** 2
    explained = var[:k] / var.sum().clamp(min=1e-12)
    z = xc @ comps.T
    low = torch.quantile(z, quantile, dim=0)
    high = torch.quantile(z, 1.0 - quantile, dim=0)
    return PCAProjector(mean=mean, components=comps, low=low, high=high, explained=explained)


def pca_rgb_pair(target: Tensor, pred: Tensor, n_components: int = 3) -> tuple[Tensor, Tensor, PCAProjector]:
    """Colour a target and a prediction with one projection fitted on the target.

    Args:
        target: ``[..., D]`` target features (e.g. ``[T, Hg, Wg, D]``).
        pred: ``[..., D]`` predicted features (any leading shape).
    Returns:
        ``(rgb_target [..., 3], rgb_pred [..., 3], projector)``, floats in [0, 1].
    """
    projector = fit_pca(target, n_components)
    return projector.to_rgb(target), projector.to_rgb(pred), projector
