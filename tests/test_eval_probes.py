"""Linear and attentive probes on synthetic frozen features with planted factors."""

from __future__ import annotations

import pytest
import torch

from hjepa.eval.probes import AttentiveProbe, LinearProbe, r2_score, split_by_group, train_probe


def _spatial_features(n: int, q: int = 16, d: int = 16, seed: int = 0):
    """Tokens where an object's position is *which* token carries a marker: invisible to a mean.

    Every token slot carries a fixed position code (as encoder tokens carry their position
    embedding), so the token holding the marker tells where the object is, while the mean
    over tokens is the same wherever it is.
    """
    g = torch.Generator().manual_seed(seed)
    pos_code = torch.randn(q, d, generator=g)
    x = torch.randn(n, q, d, generator=g) * 0.3 + pos_code
    where = torch.randint(0, q, (n,), generator=g)
    marker = torch.randn(d, generator=g)
    x[torch.arange(n), where] += 3 * marker
    pos = torch.stack([(where % 4).float(), (where // 4).float()], 1) / 3  # [n, 2] in [0, 1]
    return x, pos, where


def test_probe_heads_shapes():
    x = torch.randn(5, 7, 12)
    assert LinearProbe(12, 3)(x).shape == (5, 3)
    assert AttentiveProbe(12, 3, num_heads=5)(x).shape == (5, 3)  # heads reduced to a divisor of 12


def test_split_by_group_keeps_groups_apart():
    groups = torch.arange(20).repeat_interleave(5)
    tr, va = split_by_group(groups, 0.25, seed=1)
    assert len(tr) + len(va) == 100
    assert not set(groups[tr].tolist()) & set(groups[va].tolist())
    assert len(set(groups[va].tolist())) == 5
    with pytest.raises(ValueError, match="2 groups"):
        split_by_group(torch.zeros(4, dtype=torch.long))


def test_r2_score():
    y = torch.randn(100, 3)
    assert abs(r2_score(y, y) - 1) < 1e-6
    assert abs(r2_score(y.mean(0).expand_as(y), y)) < 1e-6


def test_linear_probe_reads_a_linear_class_factor():
    torch.manual_seed(0)
    n, d = 600, 16
    labels = torch.randint(0, 4, (n,))
    centers = torch.randn(4, d) * 2
    x = centers[labels][:, None, :] + torch.randn(n, 8, d)
    groups = torch.arange(n) // 6
    tr, va = split_by_group(groups, 0.3)
    res = train_probe(x, labels, tr, va, kind="linear", steps=200)
    assert res.task == "classification" and res.val > 0.9 and res.chance < 0.4
    # Early stopping on a fifth of the training clips keeps what was learnt.
    stopped = train_probe(x, labels, tr, va, kind="linear", steps=200, groups=groups)
    assert stopped.val > 0.9


def test_attentive_probe_reads_layout_that_averaging_loses():
    x, pos, _ = _spatial_features(400)
    tr, va = split_by_group(torch.arange(400) // 4, 0.3)
    lin = train_probe(x, pos, tr, va, kind="linear", steps=150)
    att = train_probe(x, pos, tr, va, kind="attentive", steps=150)
    assert lin.task == att.task == "regression"
    # Averaging the tokens loses which one carries the marker: R² near 0.
    assert lin.val < 0.3
    assert att.val > 0.8, att


def test_probe_on_noise_stays_at_chance():
    torch.manual_seed(0)
    x = torch.randn(400, 4, 8)
    labels = torch.randint(0, 2, (400,))
    tr, va = split_by_group(torch.arange(400) // 4, 0.3)
    res = train_probe(x, labels, tr, va, kind="linear", steps=100)
    assert res.val < 0.65
    reg = train_probe(x, torch.randn(400, 2), tr, va, kind="linear", steps=100)
    assert reg.val < 0.1


def test_probe_refuses_bad_input():
    x = torch.randn(10, 2, 4)
    with pytest.raises(ValueError, match="kind"):
        train_probe(x, torch.zeros(10, dtype=torch.long), torch.arange(5), torch.arange(5, 10), kind="mlp")
    with pytest.raises(ValueError, match="both splits"):
        train_probe(x, torch.zeros(10, dtype=torch.long), torch.arange(10), torch.arange(0))
    x[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        train_probe(x, torch.zeros(10, dtype=torch.long), torch.arange(5), torch.arange(5, 10))
