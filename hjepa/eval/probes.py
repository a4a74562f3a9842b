"""Probes on frozen representations: which level holds which factor.

Two probe heads, trained with the shared loop (``hjepa.heads.fit``, full batch) on features
that are computed once and never back-propagated into:

- :class:`LinearProbe`: a linear map on the token-averaged features (the classic test of
  what a representation makes linearly available);
- :class:`AttentiveProbe`: the shared attentive pooler (one learned query), then a linear map
  (V-JEPA's evaluation head); it can read spatial layout that averaging throws away.

Targets are either class ids (accuracy) or real vectors such as object positions (R²).
Splits are by group (a clip) so that two steps of the same clip never sit on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from hjepa.heads import AttentivePooler, fit

__all__ = [
    "LinearProbe",
    "AttentiveProbe",
    "ProbeResult",
    "split_by_group",
    "r2_score",
    "train_probe",
]

ProbeKind = Literal["linear", "attentive"]


class LinearProbe(nn.Module):
    """Linear head on token-averaged features.

    Args:
        dim: feature width D.
        out_dim: classes (classification) or outputs (regression).
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.head = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, Q, D]`` -> ``[N, out_dim]``."""
        return self.head(x.mean(1))


class AttentiveProbe(nn.Module):
    """The shared attentive pooler (one learned query, one block), then a linear head.

    The probe's features are standardised over the training split before they reach it, so the
    pooler reads the tokens without a per-token norm (which would hide the token that stands out).

    Args:
        dim: feature width D.
        out_dim: classes or outputs.
        num_heads: attention heads; reduced to a divisor of ``dim`` if needed.
    """

    def __init__(self, dim: int, out_dim: int, num_heads: int = 4) -> None:
        super().__init__()
        while dim % num_heads:
            num_heads -= 1
        self.pooler = AttentivePooler(dim, num_queries=1, depth=1, num_heads=num_heads, norm_tokens=False)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, Q, D]`` -> ``[N, out_dim]``."""
        return self.head(self.pooler(x)[:, 0])


@dataclass
class ProbeResult:
    """Score of one probe.

    Attributes:
        kind: ``linear`` or ``attentive``.
        task: ``classification`` (metric: accuracy) or ``regression`` (metric: R², mean over outputs).
        train: metric on the training split.
        val: metric on the held-out split.
        chance: accuracy of always answering the training split's most frequent class
            (classification) or 0 (regression: R² of predicting the training mean is <= 0).
        num_train, num_val: samples per split.
    """

    kind: str
    task: str
    train: float
    val: float
    chance: float
    num_train: int
    num_val: int


def split_by_group(groups: Tensor, val_fraction: float = 0.3, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Split samples into train / val so that no group (clip) lands on both sides.

    Args:
        groups: ``long [N]`` group id per sample.
        val_fraction: share of groups held out (at least one group each side).
    Returns:
        ``(train_idx, val_idx)``, ``long`` indices into ``N``.
    """
    unique = torch.unique(groups)
    if len(unique) < 2:
        raise ValueError(f"split_by_group needs at least 2 groups (clips), got {len(unique)}")
    gen = torch.Generator().manual_seed(seed)
    perm = unique[torch.randperm(len(unique), generator=gen)]
    n_val = min(max(1, round(val_fraction * len(unique))), len(unique) - 1)
    is_val = torch.isin(groups, perm[:n_val])
    return torch.nonzero(~is_val).flatten(), torch.nonzero(is_val).flatten()


def r2_score(pred: Tensor, target: Tensor, reference_mean: Tensor | None = None) -> float:
    """Coefficient of determination, averaged over outputs.

    Args:
        pred, target: ``[N, P]``.
        reference_mean: ``[P]`` the mean the baseline predicts (default: the mean of ``target``).
    Returns:
        ``1 - SSE / SST`` averaged over the P outputs; outputs with no variance are skipped.
    """
    if reference_mean is None:
        reference_mean = target.mean(0)
    sse = ((pred - target) ** 2).sum(0)
    sst = ((target - reference_mean) ** 2).sum(0)
    keep = sst > 1e-12
    if not keep.any():
        return 0.0
    return (1.0 - sse[keep] / sst[keep]).mean().item()


def train_probe(
    features: Tensor,
    targets: Tensor,
    train_idx: Tensor,
    val_idx: Tensor,
    kind: ProbeKind = "linear",
    steps: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 1e-3,
    seed: int = 0,
    groups: Tensor | None = None,
    eval_every: int = 10,
) -> ProbeResult:
    """Train a probe on frozen features and score it on both splits.

    Features are standardised with the training split's statistics (per dim), so one
    learning rate serves every level. Classification uses cross-entropy, regression MSE
    on standardised targets; both run ``steps`` full-batch AdamW steps (the sets are small)
    through ``hjepa.heads.fit``.

    With ``groups`` (the clip of every sample), a fifth of the training clips is set aside
    to pick the step count (early stopping: the weights that scored best on them are kept),
    so a probe with many parameters and few clips does not report its overfitted state.
    The held-out ``val_idx`` is never used for that choice.

    Args:
        features: ``[N, Q, D]`` frozen representations (``[N, D]`` is read as Q = 1).
        targets: ``long [N]`` class ids (classification) or ``float [N, P]`` / ``[N]`` (regression).
        train_idx, val_idx: ``long`` indices into ``N``.
        kind: ``linear`` or ``attentive``.
    Returns:
        :class:`ProbeResult`.
    """
    if kind not in ("linear", "attentive"):
        raise ValueError(f"probe kind = {kind!r}: must be 'linear' or 'attentive'")
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(f"probe needs samples on both splits, got {len(train_idx)} train / {len(val_idx)} val")
    x = features.detach().float()
    if x.dim() == 2:
        x = x[:, None]
    if not torch.isfinite(x).all():
        raise ValueError("probe features contain NaN or inf")
    classification = not targets.is_floating_point()
    x_train = x[train_idx]
    mu = x_train.mean((0, 1), keepdim=True)
    sd = x_train.std((0, 1), keepdim=True).clamp(min=1e-6)
    x = (x - mu) / sd

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if classification:
            y = targets.long()
            out_dim = int(y.max().item()) + 1
        else:
            y = targets.float().reshape(len(targets), -1)
            y_mu, y_sd = y[train_idx].mean(0), y[train_idx].std(0).clamp(min=1e-6)
            y = (y - y_mu) / y_sd
            out_dim = y.shape[1]
        probe: nn.Module = (LinearProbe if kind == "linear" else AttentiveProbe)(x.shape[-1], out_dim)
        fit_idx, sel_idx = train_idx, None
        if groups is not None and len(torch.unique(groups[train_idx])) >= 3:
            inner_fit, inner_sel = split_by_group(groups[train_idx], 0.2, seed + 1)
            fit_idx, sel_idx = train_idx[inner_fit], train_idx[inner_sel]
        xt, yt = x[fit_idx], y[fit_idx]

        def loss_fn(_: None) -> Tensor:
            out = probe(xt)
            return F.cross_entropy(out, yt) if classification else F.mse_loss(out, yt)

        def select() -> float:
            sel_out = probe(x[sel_idx])
            return (_accuracy(sel_out, y[sel_idx]) if classification
                    else r2_score(sel_out, y[sel_idx], y[fit_idx].mean(0)))

        # full batch: one step per epoch; the selection every ``eval_every`` steps
        fit(probe, probe.parameters(), lambda _: [None], loss_fn, steps, lr, weight_decay,
            select=select if sel_idx is not None else None, select_every=eval_every)

    probe.eval()
    with torch.no_grad():
        out = probe(x)
    if classification:
        train = _accuracy(out[train_idx], y[train_idx])
        val = _accuracy(out[val_idx], y[val_idx])
        counts = torch.bincount(y[train_idx], minlength=out_dim)
        chance_class = counts.argmax()
        chance = (y[val_idx] == chance_class).float().mean().item()
    else:
        ref = y[train_idx].mean(0)
        train = r2_score(out[train_idx], y[train_idx], ref)
        val = r2_score(out[val_idx], y[val_idx], ref)
        chance = 0.0
    return ProbeResult(
        kind=kind,
        task="classification" if classification else "regression",
        train=train,
        val=val,
        chance=chance,
        num_train=int(len(train_idx)),
        num_val=int(len(val_idx)),
    )


def _accuracy(logits: Tensor, labels: Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()
