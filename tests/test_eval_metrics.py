"""Metric functions of hjepa.eval.metrics on synthetic tensors with known answers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hjepa.eval.metrics import (
    collapse_stats,
    cosine_similarity,
    effective_rank,
    l1_error,
    normalize_targets,
    retrieval_chance,
    retrieval_ranks,
    retrieval_scores,
    score_predictions,
)


def test_normalize_targets_is_layer_norm_and_idempotent():
    torch.manual_seed(0)
    x = torch.randn(5, 7, 32) * 3 + 2
    n = normalize_targets(x)
    assert torch.allclose(n.mean(-1), torch.zeros(5, 7), atol=1e-5)
    assert torch.allclose(n.var(-1, unbiased=False), torch.ones(5, 7), atol=1e-3)
    assert torch.allclose(normalize_targets(n), n, atol=1e-3)


def test_l1_error_compares_against_the_normalised_target():
    torch.manual_seed(0)
    target = torch.randn(4, 3, 16) * 5 + 1
    pred = F.layer_norm(target, (16,))
    assert l1_error(pred, target).abs().max() < 1e-5
    assert l1_error(pred, target, normalize=False).min() > 0.5
    with pytest.raises(ValueError, match="shape"):
        l1_error(pred[:, :2], target)


def test_cosine_similarity_per_sample():
    a = torch.randn(3, 4, 8)
    assert torch.allclose(cosine_similarity(a, 2 * a), torch.ones(3), atol=1e-6)
    assert torch.allclose(cosine_similarity(a, -a), -torch.ones(3), atol=1e-6)


def test_score_predictions_perfect_copy_and_mean():
    torch.manual_seed(0)
    target = normalize_targets(torch.randn(50, 4, 16))
    present = normalize_targets(torch.randn(50, 4, 16))
    perfect = score_predictions(target.clone(), target, present)
    assert perfect.l1 < 1e-4 and perfect.copy_ratio < 1e-4 and abs(perfect.cosine - 1) < 1e-5
    copy = score_predictions(present.clone(), target, present)
    assert abs(copy.copy_ratio - 1) < 1e-6
    assert abs(copy.cosine - copy.copy_cosine) < 1e-6
    mean = score_predictions(target.mean(0, keepdim=True).expand_as(target).clone(), target, present)
    assert abs(mean.mean_ratio - 1) < 1e-5
    assert mean.count == 50
    with pytest.raises(ValueError, match="no samples"):
        score_predictions(target[:0], target[:0], present[:0])


@pytest.mark.parametrize("similarity", ["l1", "cosine"])
def test_retrieval_finds_noisy_copies(similarity):
    torch.manual_seed(0)
    keys = torch.randn(40, 3, 16)
    queries = keys[:20] + 0.05 * torch.randn(20, 3, 16)
    scores = retrieval_scores(queries, keys, torch.arange(20), similarity)
    assert scores.top1 == 1.0 and scores.mrr == 1.0
    assert abs(scores.chance_top1 - 1 / 40) < 1e-9


def test_retrieval_of_unrelated_queries_is_near_chance():
    torch.manual_seed(0)
    n = 2000
    keys = torch.randn(n // 10, 8)
    queries = torch.randn(n, 8)
    positive = torch.randint(0, n // 10, (n,))
    scores = retrieval_scores(queries, keys, positive)
    # 2000 queries among 200 keys: chance top-1 = 0.005, chance MRR = H_200 / 200 ~ 0.029.
    assert scores.top1 < 0.02
    assert abs(scores.mrr - scores.chance_mrr) < 0.012


def test_retrieval_ties_count_against_the_query():
    keys = torch.ones(6, 4)  # a collapsed model: all futures look alike
    ranks = retrieval_ranks(torch.ones(3, 4), keys, torch.tensor([0, 2, 5]))
    assert ranks.tolist() == [6, 6, 6]


def test_retrieval_candidates_mask_and_chance():
    torch.manual_seed(0)
    keys = torch.randn(10, 8)
    queries = keys[[3]] * 0.2 + keys[[4]]  # closest key is 4, but the true one is 3
    positive = torch.tensor([3])
    assert retrieval_ranks(queries, keys, positive).item() >= 2
    only_true = torch.zeros(1, 10, dtype=torch.bool)
    assert retrieval_ranks(queries, keys, positive, candidates=only_true).item() == 1
    cand = torch.zeros(1, 10, dtype=torch.bool)
    cand[0, [3, 4]] = True
    s = retrieval_scores(queries, keys, positive, candidates=cand)
    assert s.top1 == 0.0 and s.mrr == 0.5 and s.chance_top1 == 0.5
    with pytest.raises(ValueError, match="positive"):
        retrieval_ranks(queries, keys, torch.tensor([10]))


def test_retrieval_chance_matches_the_harmonic_number():
    for m in (1, 2, 7, 100):
        top1, mrr = retrieval_chance(torch.tensor([m]))
        assert abs(top1 - 1 / m) < 1e-12
        assert abs(mrr - sum(1 / r for r in range(1, m + 1)) / m) < 1e-9


def test_effective_rank_counts_equal_energy_directions():
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(32, 32))[0]
    for k in (1, 4, 12):
        coeff = torch.randn(4000, k)
        coeff = (coeff - coeff.mean(0)) / coeff.std(0)
        x = coeff @ basis[:k]
        assert abs(effective_rank(x) - k) < 0.1 * k + 0.05


def test_collapse_stats():
    torch.manual_seed(0)
    healthy = collapse_stats(torch.randn(1000, 16))
    assert abs(healthy.std_mean - 1) < 0.05 and healthy.eff_rank > 15 and healthy.eff_rank_ratio > 0.9
    collapsed = collapse_stats(torch.full((100, 4, 16), 3.0))
    assert collapsed.std_mean == 0.0 and collapsed.std_min == 0.0 and collapsed.eff_rank <= 1.0
    for v in (healthy.std_mean, healthy.eff_rank, collapsed.eff_rank):
        assert math.isfinite(v)
    with pytest.raises(ValueError, match="2 samples"):
        collapse_stats(torch.randn(1, 8))
