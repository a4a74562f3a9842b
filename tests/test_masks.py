"""Multi-block 3-D masks and apply_masks."""

from __future__ import annotations

import pytest
import torch

from hjepa.masks import (
    DEFAULT_MASK_SPECS,
    BlockMaskSpec,
    MultiBlockMasks,
    apply_masks,
    sample_multiblock,
)

GRID = (8, 14, 14)  # 16 frames of 224 x 224 with a 2x16x16 tubelet
N = 8 * 14 * 14


def test_context_and_target_are_disjoint_sorted_and_inside_the_grid() -> None:
    enc, pred = MultiBlockMasks(GRID, seed=1)(16)
    assert len(enc) == len(pred) == len(DEFAULT_MASK_SPECS)
    for c, t in zip(enc, pred):
        assert c.dtype == t.dtype == torch.long
        assert c.shape[0] == t.shape[0] == 16 and c.shape[1] > 0 and t.shape[1] > 0
        for row_c, row_t in zip(c, t):
            assert 0 <= int(row_c.min()) and int(row_c.max()) < N
            assert 0 <= int(row_t.min()) and int(row_t.max()) < N
            assert torch.all(row_c[1:] > row_c[:-1]) and torch.all(row_t[1:] > row_t[:-1])  # sorted, unique
            assert not set(row_c.tolist()) & set(row_t.tolist())


@pytest.mark.parametrize("scale", [0.15, 0.4, 0.7])
def test_single_block_target_fraction_is_near_the_scale(scale: float) -> None:
    """One block, full time span: target fraction = h * w / (Hg * Wg) with h, w rounded to tokens.

    Tolerance 0.05 absolute on the mean over 40 batches: rounding h and w to whole tokens on a
    14 x 14 plane moves one block's area by at most about (h + w) / 2 tokens, < 0.05 of 196.
    """
    spec = BlockMaskSpec(num_blocks=1, spatial_scale=(scale, scale))
    g = torch.Generator().manual_seed(0)
    fracs = []
    for _ in range(40):
        ctx, tgt = sample_multiblock(GRID, spec, 4, g)
        assert ctx.shape[1] + tgt.shape[1] == N  # one block: same size in every row, nothing trimmed
        fracs.append(tgt.shape[1] / N)
    assert abs(sum(fracs) / len(fracs) - scale) < 0.05


def test_temporal_scale_limits_the_time_span() -> None:
    spec = BlockMaskSpec(num_blocks=1, spatial_scale=(0.3, 0.3), temporal_scale=(0.5, 0.5))
    _, tgt = sample_multiblock(GRID, spec, 8, torch.Generator().manual_seed(0))
    slots = tgt // (14 * 14)
    for row in slots:
        assert len(row.unique()) == 4  # 0.5 of 8 time slots
        assert int(row.max() - row.min()) == 3  # contiguous


def test_default_specs_union_fraction() -> None:
    """8 blocks of 0.15 cover between one block (0.15) and their sum (1.2, capped at 1); V-JEPA reports ~0.6-0.75."""
    enc, pred = MultiBlockMasks(GRID, seed=3)(32)
    short = pred[0].shape[1] / N
    long = pred[1].shape[1] / N
    assert 0.3 < short < 0.85
    assert 0.7 <= long < 0.98
    assert enc[0].shape[1] + pred[0].shape[1] <= N


def test_seeded_determinism() -> None:
    a = MultiBlockMasks(GRID, seed=7)
    b = MultiBlockMasks(GRID, seed=7)
    c = MultiBlockMasks(GRID, seed=8)
    for _ in range(3):
        ea, pa = a(4)
        eb, pb = b(4)
        ec, pc = c(4)
        assert all(torch.equal(x, y) for x, y in zip(ea + pa, eb + pb))
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(ea + pa, ec + pc))


def test_apply_masks_gathers_and_stacks() -> None:
    x = torch.arange(2 * 5 * 3).reshape(2, 5, 3)
    m1 = torch.tensor([[0, 4], [1, 2]])
    m2 = torch.tensor([[3, 3], [0, 1]])
    out = apply_masks(x, [m1, m2])
    assert out.shape == (4, 2, 3)
    assert torch.equal(out[0], x[0, [0, 4]]) and torch.equal(out[3], x[1, [0, 1]])
    assert torch.equal(apply_masks(x, m1), out[:2])
    with pytest.raises(ValueError, match="same K"):
        apply_masks(x, [m1, torch.tensor([[0], [1]])])


def test_invalid_specs_and_impossible_masks() -> None:
    with pytest.raises(ValueError, match="spatial_scale"):
        BlockMaskSpec(spatial_scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="num_blocks"):
        BlockMaskSpec(num_blocks=0)
    with pytest.raises(RuntimeError, match="context"):
        sample_multiblock((2, 1, 1), BlockMaskSpec(num_blocks=1), 2, torch.Generator().manual_seed(0))
    # A box that would cover the whole grid keeps one row / column for the context instead.
    ctx, _ = sample_multiblock((2, 4, 4), BlockMaskSpec(num_blocks=1, spatial_scale=(1.0, 1.0)), 2,
                               torch.Generator().manual_seed(0))
    assert ctx.shape == (2, 8)
    with pytest.raises(ValueError, match="divisible"):
        MultiBlockMasks.for_input(15, 224, 224)
