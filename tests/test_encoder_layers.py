"""Blocks, 3-D RoPE and sin-cos tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hjepa.models.layers import Attention, Block, DropPath
from hjepa.models.pos_embed import sincos_3d, sincos_3d_split, sincos_table_1d
from hjepa.models.rope import apply_rope, rope_axis_dim, rope_tables
from hjepa.models.vit import grid_positions


@pytest.mark.parametrize("head_dim", [24, 32, 64])
def test_rope_matches_transformers_vjepa2(head_dim: int) -> None:
    """Our one-shot rotation equals transformers' VJEPA2 segment-by-segment rotation."""
    hf = pytest.importorskip("transformers.models.vjepa2.modeling_vjepa2")
    torch.manual_seed(0)
    grid = (3, 4, 5)
    pos = grid_positions(grid)  # [N, 3]
    x = torch.randn(2, 3, pos.shape[0], head_dim)
    seg = rope_axis_dim(head_dim)
    parts, s = [], 0
    for axis in range(3):
        parts.append(hf.rotate_queries_or_keys(x[..., s : s + seg], pos=pos[:, axis]))
        s += seg
    parts.append(x[..., s:])
    expected = torch.cat(parts, dim=-1)
    cos, sin = rope_tables(pos.unsqueeze(0), head_dim)
    assert torch.allclose(apply_rope(x, cos, sin), expected, atol=1e-6)


def test_rope_preserves_norm_of_unrotated_tail_and_identity_at_origin() -> None:
    x = torch.randn(1, 2, 1, 32)
    cos, sin = rope_tables(torch.zeros(1, 1, 3), 32)
    assert torch.equal(apply_rope(x, cos, sin), x)  # angle 0 everywhere
    cos, sin = rope_tables(torch.tensor([[[3.0, 2.0, 1.0]]]), 32)
    out = apply_rope(x, cos, sin)
    assert torch.equal(out[..., 30:], x[..., 30:])  # 32 = 3 * 10 + 2 unrotated channels


def test_attention_masks_block_attention() -> None:
    torch.manual_seed(0)
    attn = Attention(32, num_heads=4).eval()
    x = torch.randn(1, 5, 32)
    mask = torch.ones(1, 1, 5, 5, dtype=torch.bool)
    mask[..., 0, 1:] = False  # token 0 sees only itself
    out = attn(x, attn_mask=mask)
    y = x.clone()
    y[:, 1:] += 1.0
    assert torch.allclose(attn(y, attn_mask=mask)[:, 0], out[:, 0], atol=1e-6)
    with pytest.raises(TypeError, match="bool"):
        attn(x, attn_mask=mask.float())


def test_block_rope_needs_positions() -> None:
    blk = Block(24, 2, use_rope=True)
    with pytest.raises(ValueError, match="pos"):
        blk(torch.randn(1, 4, 24))
    out = blk(torch.randn(1, 4, 24), pos=grid_positions((1, 2, 2)).unsqueeze(0))
    assert out.shape == (1, 4, 24)


def test_drop_path_identity_in_eval_and_scaled_in_train() -> None:
    dp = DropPath(0.5)
    x = torch.ones(1000, 3)
    assert torch.equal(dp.eval()(x), x)
    torch.manual_seed(0)
    y = dp.train()(x)
    kept = (y[:, 0] > 0).float().mean().item()
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    assert abs(kept - 0.5) < 0.06  # 1000 Bernoulli(0.5): 4 standard deviations ~ 0.063


def _vjepa_reference_table(dim: int, grid_depth: int, grid_size: int, uniform_power: bool) -> np.ndarray:
    """V-JEPA's 3-D table written out independently in numpy (square spatial grid)."""

    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=float) / (d / 2.0))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    d_idx, h_idx, w_idx = np.meshgrid(
        np.arange(grid_depth, dtype=float), np.arange(grid_size, dtype=float), np.arange(grid_size, dtype=float),
        indexing="ij",
    )
    if uniform_power:
        dd = dh = dw = int(math.ceil(dim / 6) * 2)
    else:
        dd, dh, dw = dim // 2, dim // 4, dim // 4
    return np.concatenate([one_d(dd, d_idx), one_d(dh, h_idx), one_d(dw, w_idx)], axis=1)[:, :dim]


@pytest.mark.parametrize("uniform_power", [True, False])
@pytest.mark.parametrize("dim", [64, 96, 1024])
def test_sincos_3d_matches_vjepa_layout(dim: int, uniform_power: bool) -> None:
    ours = sincos_3d(dim, (3, 5, 5), uniform_power)
    ref = torch.from_numpy(_vjepa_reference_table(dim, 3, 5, uniform_power)).float()
    assert ours.shape == (75, dim) and ours.dtype == torch.float32
    assert torch.equal(ours, ref)


def test_sincos_3d_any_grid_and_cache() -> None:
    table = sincos_3d(64, (2, 3, 4))
    assert table.shape == (24, 64)
    assert sincos_3d(64, (2, 3, 4)) is table  # cached
    dt, _, _ = sincos_3d_split(64, True)
    # Time channels depend on t only: rows with equal t share them.
    assert torch.equal(table[0, :dt], table[11, :dt]) and not torch.equal(table[0, :dt], table[12, :dt])
    assert sincos_table_1d(8, 5).shape == (5, 8)
    with pytest.raises(ValueError, match="grid"):
        sincos_3d(64, (0, 3, 4))
