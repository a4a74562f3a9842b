"""The future predictor's block-by-block attention equals the dense masked attention it replaces."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hjepa.models.config import PredictorConfig
from hjepa.models.level import future_pairs
from hjepa.models.predictor import FuturePredictor, future_pattern
from hjepa.models.step_attention import StepWindowPattern, step_window_attention


def assert_blocks_equal_dense(pattern: StepWindowPattern) -> None:
    """Block-by-block attention under ``pattern`` equals the dense masked one, values and gradients."""
    q, k, v = (torch.randn(2, 3, pattern.length, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    dense = F.scaled_dot_product_attention(q, k, v, attn_mask=pattern.dense_mask())
    blocks = step_window_attention(q, k, v, pattern)
    torch.testing.assert_close(blocks, dense, rtol=0, atol=1e-12)
    weights = torch.randn_like(dense)
    for a, b in zip(torch.autograd.grad((dense * weights).sum(), (q, k, v)),
                    torch.autograd.grad((blocks * weights).sum(), (q, k, v))):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("steps,tokens,horizon,window", [(8, 4, 2, 4), (5, 3, 3, 2), (12, 2, 4, 3), (3, 2, 1, 8),
                                                         (6, 4, 2, None)])
def test_block_attention_equals_dense_masked_attention(steps: int, tokens: int, horizon: int, window: int | None) -> None:
    torch.manual_seed(steps)
    pairs = future_pairs(steps, horizon)
    keep = torch.randperm(pairs.shape[0])[: max(1, pairs.shape[0] // 2)].sort().values  # a random subset, as in training
    for chosen in (pairs, pairs[keep]):
        s = int(chosen[:, 0].max()) + 1
        pattern = future_pattern(s, tokens, chosen, window)
        assert_blocks_equal_dense(pattern)


def test_the_predictor_gives_the_same_predictions_either_way(monkeypatch) -> None:
    torch.manual_seed(0)
    pred = FuturePredictor(16, PredictorConfig(embed_dim=32, depth=2, num_heads=4), horizon=2, num_tokens=4,
                           context_window=3).double()
    context = torch.randn(2, 10, 4, 16, dtype=torch.float64)
    pairs = future_pairs(10, 2)
    assert future_pattern(10, 4, pairs, 3).pays()
    blocks = pred(context, pairs)
    monkeypatch.setattr("hjepa.models.step_attention.StepWindowPattern.pays", lambda self: False)
    torch.testing.assert_close(pred(context, pairs), blocks, rtol=0, atol=1e-12)


def test_blocks_are_used_only_where_they_skip_work() -> None:
    pairs = future_pairs(64, 2)
    assert future_pattern(64, 16, pairs, 4).pays()
    assert future_pattern(64, 16, pairs, None).pays()  # unbounded: still skips the later steps and other groups
    short = future_pairs(3, 1)
    assert not future_pattern(2, 2, short, 8).pays()  # two steps: the blocks would cover the whole mask


@pytest.mark.parametrize("steps,tokens,group,window", [(8, 2, 4, 4), (5, 3, 7, 2), (6, 4, 2, None)])
def test_block_attention_with_fewer_context_tokens_than_queries(steps: int, tokens: int, group: int,
                                                                window: int | None) -> None:
    # A context that kept K of each step's Q tokens (context_keep < 1): groups keep all Q.
    torch.manual_seed(steps)
    pairs = future_pairs(steps, 2)
    pattern = future_pattern(steps - 1, tokens, pairs, window, group_tokens=group)
    assert pattern.length == (steps - 1) * tokens + pairs.shape[0] * group
    assert_blocks_equal_dense(pattern)
