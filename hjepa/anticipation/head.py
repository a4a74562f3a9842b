"""Anticipation head: one learned query per output cross-attends to the feature tokens.

The features are several token sets of different widths (each level's context tokens, each
level's predicted tokens). Each set is projected to the head width and tagged with a learned
source embedding, so the queries can tell "level 2, predicted" from "level 1, context"; the
sets are then concatenated and the queries (``verb``, ``noun``, ``action``) of the shared
:class:`~hjepa.heads.pooling.AttentivePooler` attend to all of them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hjepa.anticipation.config import LossName
from hjepa.heads.pooling import AttentivePooler



class AnticipationHead(nn.Module):
    """Anticipation head over several token sets.

    Each token set is first standardised with per-(token, channel) statistics of the training
    features (:meth:`set_input_stats`; identity until set), as linear probes standardise
    frozen features: representations whose variation across clips is small next to their
    mean (a level that drifts towards collapse) are then still read on a common scale.

    Args:
        in_shapes: ``(tokens, width)`` of each token set, in the order ``forward`` receives them.
        num_classes: classes per output, e.g. ``{"verb": 97, "noun": 300, "action": 3568}``;
            one query per output.
        dim, depth, num_heads, mlp_ratio, dropout: head width and cross-attention blocks.
    """

    def __init__(
        self,
        in_shapes: Sequence[tuple[int, int]],
        num_classes: Mapping[str, int],
        dim: int = 256,
        depth: int = 1,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not in_shapes:
            raise ValueError("the head needs at least one token set")
        if not num_classes:
            raise ValueError("the head needs at least one output")
        self.in_shapes = [tuple(s) for s in in_shapes]
        in_dims = [d for _, d in self.in_shapes]
        self.outputs = list(num_classes)
        for i, (n, d) in enumerate(self.in_shapes):
            self.register_buffer(f"in_mean{i}", torch.zeros(n, d))
            self.register_buffer(f"in_std{i}", torch.ones(n, d))
        self.proj = nn.ModuleList(nn.Sequential(nn.LayerNorm(d), nn.Linear(d, dim)) for d in in_dims)
        self.source_embed = nn.Parameter(torch.zeros(len(in_dims), dim))
        # one query per output; drawn after the classifiers, so a seed gives the same head as ever
        self.pooler = AttentivePooler(dim, len(self.outputs), depth, num_heads, mlp_ratio, dropout, init_queries=False)
        self.classifiers = nn.ModuleDict({name: nn.Linear(dim, c) for name, c in num_classes.items()})
        nn.init.trunc_normal_(self.source_embed, std=0.02)
        self.pooler.reset_queries()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # heads saved before the pooler was shared held its queries, blocks and norm directly
        for old in [k for k in state_dict if k.startswith(prefix) and
                    k[len(prefix):].split(".")[0] in ("queries", "blocks", "norm")]:
            state_dict[prefix + "pooler." + old[len(prefix):]] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def set_input_stats(self, sources: Sequence[Tensor], rel_floor: float = 1e-3) -> None:
        """Standardise inputs with the mean / std over samples of ``sources`` (``[M, N_i, D_i]`` each).

        Standard deviations are floored at ``rel_floor`` times the set's RMS, so channels that do
        not vary at all (float noise) are not blown up.
        """
        for i, s in enumerate(sources):
            s = s.float()
            if tuple(s.shape[1:]) != self.in_shapes[i]:
                raise ValueError(f"token set {i} is {tuple(s.shape[1:])}, the head was built for {self.in_shapes[i]}")
            floor = rel_floor * s.square().mean().sqrt().clamp_min(1e-12)
            getattr(self, f"in_mean{i}").copy_(s.mean(0))
            getattr(self, f"in_std{i}").copy_(s.std(0, unbiased=False).clamp_min(floor))

    def forward(self, sources: Sequence[Tensor]) -> dict[str, Tensor]:
        """sources: token sets ``[B, N_i, D_i]`` (``in_shapes``) -> logits ``{output: [B, C_output]}``."""
        if len(sources) != len(self.proj):
            raise ValueError(f"expected {len(self.proj)} token sets, got {len(sources)}")
        for i, s in enumerate(sources):
            # a head saved with other feature settings (crop, token_grid, context_steps) would
            # otherwise fail in the standardisation with a bare broadcasting error
            if tuple(s.shape[1:]) != self.in_shapes[i]:
                raise ValueError(f"token set {i} is {tuple(s.shape[1:])}, the head was built for {self.in_shapes[i]} "
                                 "(features made with other crop_size / token_grid / context_steps settings?)")
        x = torch.cat([
            p((s.float() - getattr(self, f"in_mean{i}")) / getattr(self, f"in_std{i}")) + e
            for i, (p, s, e) in enumerate(zip(self.proj, sources, self.source_embed))
        ], dim=1)  # [B, N, D]
        q = self.pooler(x)  # [B, outputs, D]
        return {name: self.classifiers[name](q[:, i]) for i, name in enumerate(self.outputs)}


def sigmoid_focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0, alpha: float = 0.25) -> Tensor:
    """Focal loss on one-vs-all sigmoids (Lin et al. 2017), summed over classes, mean over the batch.

    logits: [B, C]; target: [B] class indices.
    """
    onehot = F.one_hot(target, logits.shape[1]).to(logits.dtype)
    ce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * onehot + (1 - p) * (1 - onehot)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * onehot + (1 - alpha) * (1 - onehot))
    return loss.sum(dim=1).mean()


def head_loss(
    logits: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
    loss: LossName = "ce",
    label_smoothing: float = 0.0,
    focal_gamma: float = 2.0,
    focal_alpha: float = 0.25,
) -> Tensor:
    """Sum over outputs of cross-entropy or sigmoid focal loss."""
    total = logits[next(iter(logits))].new_zeros(())
    for name, z in logits.items():
        y = targets[name]
        if loss == "ce":
            total = total + F.cross_entropy(z.float(), y, label_smoothing=label_smoothing)
        elif loss == "focal":
            total = total + sigmoid_focal_loss(z.float(), y, focal_gamma, focal_alpha)
        else:
            raise ValueError(f"unknown loss {loss!r}; use 'ce' or 'focal'")
    return total


def scores_from_logits(logits: Mapping[str, Tensor], loss: LossName = "ce") -> dict[str, Tensor]:
    """Probabilities to rank and to write: softmax for ``ce``, sigmoid for ``focal``."""
    if loss == "focal":
        return {k: torch.sigmoid(v.float()) for k, v in logits.items()}
    return {k: torch.softmax(v.float(), dim=-1) for k, v in logits.items()}
