"""Metrics on predicted vs target representations, model-independent.

Every function takes plain tensors, so the same code scores a tiny model in a test and a
ViT-L on a GPU. Shapes use ``N`` for samples (a clip at one context step), ``Q`` for tokens
per step and ``D`` for feature width.

Conventions:
- targets are compared after a layer norm over ``D`` without affine parameters, the space
  the predictors are trained to regress into (``layer_norm`` is idempotent up to ``eps``, so
  already-normalised targets may be passed again);
- "lower is better" for errors and their ratios to baselines, "higher is better" for cosine,
  retrieval accuracy and mean reciprocal rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from hjepa.losses.jepa import normalize_target as _normalize_target
from hjepa.losses.stats import effective_rank as _losses_effective_rank
from hjepa.losses.stats import feature_std

__all__ = [
    "normalize_targets",
    "l1_error",
    "cosine_similarity",
    "PredictionScores",
    "score_predictions",
    "retrieval_ranks",
    "RetrievalScores",
    "retrieval_scores",
    "retrieval_chance",
    "CollapseStats",
    "collapse_stats",
    "effective_rank",
]


def normalize_targets(target: Tensor) -> Tensor:
    """Layer norm over the last dim, no affine parameters.

    Args:
        target: ``[..., D]``.
    Returns:
        ``[..., D]`` float32 with zero mean and unit variance along ``D``.
    """
    # The training loss's own normalisation, so evaluation scores the same quantity.
    return _normalize_target(target.float())


def l1_error(pred: Tensor, target: Tensor, normalize: bool = True) -> Tensor:
    """Mean absolute error per sample.

    Args:
        pred: ``[N, ..., D]`` predictions.
        target: ``[N, ..., D]`` targets (layer-normed here when ``normalize``).
    Returns:
        ``[N]`` mean over every dim but the first.
    """
    _same_shape(pred, target, "pred", "target")
    if normalize:
        target = normalize_targets(target)
    return (pred.float() - target).abs().flatten(1).mean(1)


def cosine_similarity(pred: Tensor, target: Tensor) -> Tensor:
    """Cosine similarity along ``D``, averaged over tokens.

    Args:
        pred, target: ``[N, ..., D]``.
    Returns:
        ``[N]``; a sample without token dims gives one cosine per sample.
    """
    _same_shape(pred, target, "pred", "target")
    cos = F.cosine_similarity(pred.float(), target.float(), dim=-1, eps=1e-8)  # [N, ...]
    return cos.reshape(cos.shape[0], -1).mean(1)


@dataclass
class PredictionScores:
    """Prediction error of one (level, horizon) and its ratio to two baselines.

    Attributes:
        l1: mean L1 between prediction and layer-normed target.
        cosine: mean cosine similarity between prediction and target.
        copy_l1: L1 of the copy-the-present baseline (the present's layer-normed target
            representation used as the prediction of every future step).
        mean_l1: L1 of the mean-target baseline (the mean layer-normed target over the
            evaluated set, per token slot).
        copy_ratio: ``l1 / copy_l1``; below 1 means the predictor beats "nothing changes".
        mean_ratio: ``l1 / mean_l1``; below 1 means it beats the unconditional average.
        copy_cosine: cosine of the copy-the-present baseline.
        count: number of samples scored.
    """

    l1: float
    cosine: float
    copy_l1: float
    mean_l1: float
    copy_ratio: float
    mean_ratio: float
    copy_cosine: float
    count: int


def score_predictions(
    pred: Tensor, target: Tensor, present: Tensor, mean_target: Tensor | None = None
) -> PredictionScores:
    """Score predictions for one horizon against the target and two baselines.

    Args:
        pred: ``[N, Q, D]`` predicted representations.
        target: ``[N, Q, D]`` target representations (layer-normed here).
        present: ``[N, Q, D]`` the target representation of the last context step
            (layer-normed here): the copy-the-present baseline.
        mean_target: ``[Q, D]`` mean layer-normed target; by default the mean of ``target``
            over ``N`` (pass the mean over a whole evaluated set when scoring chunks).
    Returns:
        :class:`PredictionScores` with plain floats.
    """
    if pred.shape[0] == 0:
        raise ValueError("score_predictions got no samples (N = 0)")
    _same_shape(pred, present, "pred", "present")
    target_n = normalize_targets(target)
    present_n = normalize_targets(present)
    if mean_target is None:
        mean_target = target_n.mean(0)
    mean_pred = mean_target.float().expand_as(target_n)
    l1 = l1_error(pred, target_n, normalize=False).mean().item()
    copy_l1 = l1_error(present_n, target_n, normalize=False).mean().item()
    mean_l1 = l1_error(mean_pred, target_n, normalize=False).mean().item()
    return PredictionScores(
        l1=l1,
        cosine=cosine_similarity(pred, target_n).mean().item(),
        copy_l1=copy_l1,
        mean_l1=mean_l1,
        copy_ratio=_safe_ratio(l1, copy_l1),
        mean_ratio=_safe_ratio(l1, mean_l1),
        copy_cosine=cosine_similarity(present_n, target_n).mean().item(),
        count=int(pred.shape[0]),
    )


Similarity = Literal["cosine", "l1"]


def _similarity(queries: Tensor, keys: Tensor, similarity: Similarity) -> Tensor:
    """``queries: [N, F]``, ``keys: [M, F]`` -> ``[N, M]``, larger = more alike."""
    queries, keys = queries.float(), keys.float()
    if similarity == "cosine":
        return F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T
    if similarity == "l1":
        # Negative mean absolute difference: the distance the predictors are trained on.
        return -torch.cdist(queries, keys, p=1) / queries.shape[-1]
    raise ValueError(f"similarity = {similarity!r}: must be 'cosine' or 'l1'")


def retrieval_ranks(
    queries: Tensor,
    keys: Tensor,
    positive: Tensor,
    similarity: Similarity = "l1",
    candidates: Tensor | None = None,
) -> Tensor:
    """Rank of the true key among the candidate keys for every query.

    Ties count against the query (rank = number of candidates at least as similar as the
    true key), so a collapsed model whose keys are all equal gets the worst rank, not the best.

    Args:
        queries: ``[N, ...]`` predictions (flattened to ``[N, F]``).
        keys: ``[M, ...]`` candidate futures (flattened to ``[M, F]``).
        positive: ``long [N]`` index into ``keys`` of each query's true future.
        similarity: ``l1`` (negative mean absolute difference) or ``cosine``.
        candidates: optional ``bool [N, M]``: which keys query n is ranked among (the
            positive is always included). Default: all keys.
    Returns:
        ``long [N]`` ranks, 1 = the true future is the most similar.
    """
    queries = queries.reshape(queries.shape[0], -1)
    keys = keys.reshape(keys.shape[0], -1)
    if queries.shape[1] != keys.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} features but keys have {keys.shape[1]}")
    positive = positive.long()
    if positive.numel() and (positive.min() < 0 or positive.max() >= keys.shape[0]):
        raise ValueError(f"positive indices must lie in [0, {keys.shape[0]}), got {positive.tolist()}")
    sim = _similarity(queries, keys, similarity)  # [N, M]
    pos_sim = sim.gather(1, positive[:, None])  # [N, 1]
    at_least = sim >= pos_sim
    if candidates is not None:
        at_least = at_least & candidates.bool()
    at_least[torch.arange(len(positive)), positive] = True
    return at_least.sum(1)


@dataclass
class RetrievalScores:
    """Retrieval of the true future among candidate futures.

    Attributes:
        top1: fraction of queries whose most similar candidate is the true future.
        mrr: mean reciprocal rank of the true future.
        chance_top1: expected ``top1`` of a random ranking (mean of 1 / number of candidates).
        chance_mrr: expected ``mrr`` of a random ranking.
        count: number of queries.
    """

    top1: float
    mrr: float
    chance_top1: float
    chance_mrr: float
    count: int


def retrieval_chance(num_candidates: Tensor) -> tuple[float, float]:
    """Expected top-1 and MRR of a uniformly random ranking.

    Args:
        num_candidates: ``long [N]`` candidates per query (the true one included).
    Returns:
        ``(top1, mrr)``; the MRR of a random rank among M is ``H_M / M`` (harmonic number).
    """
    m = num_candidates.double().clamp(min=1)
    harmonic = torch.special.digamma(m + 1) + 0.5772156649015329  # H_M = psi(M+1) + gamma
    return (1.0 / m).mean().item(), (harmonic / m).mean().item()


def retrieval_scores(
    queries: Tensor,
    keys: Tensor,
    positive: Tensor,
    similarity: Similarity = "l1",
    candidates: Tensor | None = None,
) -> RetrievalScores:
    """Top-1 accuracy and mean reciprocal rank; see :func:`retrieval_ranks` for the arguments."""
    ranks = retrieval_ranks(queries, keys, positive, similarity, candidates).double()
    if candidates is None:
        n_cand = torch.full((len(ranks),), keys.shape[0])
    else:
        n_cand = candidates.bool().clone()
        n_cand[torch.arange(len(positive)), positive.long()] = True
        n_cand = n_cand.sum(1)
    chance_top1, chance_mrr = retrieval_chance(n_cand)
    return RetrievalScores(
        top1=(ranks == 1).double().mean().item(),
        mrr=(1.0 / ranks).mean().item(),
        chance_top1=chance_top1,
        chance_mrr=chance_mrr,
        count=int(len(ranks)),
    )


@dataclass
class CollapseStats:
    """Statistics that show a representation collapsing to a constant or a low-dim subspace.

    Attributes:
        std_mean: per-dimension standard deviation over samples, averaged over dimensions.
        std_min: the smallest per-dimension standard deviation.
        eff_rank: effective rank, ``exp`` of the entropy of the normalised singular values
            of the centred features (1 = one direction or none, ``min(N, D)`` = all equal).
        eff_rank_ratio: ``eff_rank / min(N, D)`` in (0, 1].
    """

    std_mean: float
    std_min: float
    eff_rank: float
    eff_rank_ratio: float


def effective_rank(features: Tensor, max_rows: int = 8192) -> float:
    """``exp(H(p))`` with ``p = s / sum(s)``, ``s`` the singular values of centred ``features [N, ..., D]``.

    The same statistic training logs (``hjepa.losses.effective_rank``), so numbers agree;
    at most ``max_rows`` evenly strided rows are used. A fully collapsed set gives 1.
    """
    return float(_losses_effective_rank(features.float(), max_rows=max_rows))


def collapse_stats(features: Tensor) -> CollapseStats:
    """Collapse statistics of ``features [N, ..., D]`` (all leading dims are samples)."""
    x = features.reshape(-1, features.shape[-1]).float()
    if x.shape[0] < 2:
        raise ValueError(f"collapse_stats needs at least 2 samples, got {x.shape[0]}")
    rank = effective_rank(x)
    return CollapseStats(
        std_mean=float(feature_std(x)),
        std_min=x.std(0).min().item(),
        eff_rank=rank,
        eff_rank_ratio=rank / min(x.shape),
    )


def _same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}")


def _safe_ratio(num: float, den: float) -> float:
    # A zero baseline error only happens when nothing changes at all; report the ratio as
    # 1 (no better than the baseline) rather than inf, so summaries stay finite.
    return num / den if den > 1e-12 else 1.0
