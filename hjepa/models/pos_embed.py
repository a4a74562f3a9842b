"""Fixed sin-cos position tables (1-D and 3-D), built for any grid and cached.

The 3-D table follows V-JEPA: each axis gets a 1-D ``[sin | cos]`` embedding of its integer
coordinate, concatenated as ``[time | height | width]`` and cut to ``dim`` channels. V-JEPA has
two splits of the channels:

* ``uniform_power=True`` (what its pretraining configs use): every axis gets
  ``2 * ceil(dim / 6)`` channels, the concatenation is cut to ``dim``;
* ``uniform_power=False``: time gets ``dim // 2``, height and width ``dim // 4`` each.

Tables are computed in float64 (as V-JEPA's numpy code does) and returned as float32, so a
table stored in a V-JEPA checkpoint can be compared with ours value by value.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor


def sincos_1d(dim: int, pos: Tensor) -> Tensor:
    """pos: [M] positions (any shape, flattened) -> [M, dim] ``[sin(pos * w) | cos(pos * w)]``, float64,
    on ``pos``'s device."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = pos.reshape(-1).to(torch.float64)[:, None] * omega[None, :]  # [M, dim/2]
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_3d_split(dim: int, uniform_power: bool = True) -> tuple[int, int, int]:
    """Channels given to (time, height, width) before the concatenation is cut to ``dim``."""
    if uniform_power:
        each = int(math.ceil(dim / 6) * 2)
        return each, each, each
    if dim % 4:
        raise ValueError(f"sin-cos 3-D embedding without uniform power needs dim divisible by 4, got {dim}")
    return dim // 2, dim // 4, dim // 4


@lru_cache(maxsize=64)
def _sincos_3d_cached(dim: int, grid: tuple[int, int, int], uniform_power: bool) -> Tensor:
    with torch.inference_mode(False):  # a cached inference tensor could not be used in training later
        return _sincos_3d(dim, grid, uniform_power)


def _sincos_3d(dim: int, grid: tuple[int, int, int], uniform_power: bool) -> Tensor:
    tg, hg, wg = grid
    dt, dh, dw = sincos_3d_split(dim, uniform_power)
    t, h, w = torch.meshgrid(
        torch.arange(tg, dtype=torch.float64),
        torch.arange(hg, dtype=torch.float64),
        torch.arange(wg, dtype=torch.float64),
        indexing="ij",
    )  # each [Tg, Hg, Wg]: raster order t, h, w
    table = torch.cat([sincos_1d(dt, t), sincos_1d(dh, h), sincos_1d(dw, w)], dim=1)[:, :dim]
    return table.float()


def sincos_3d(dim: int, grid: tuple[int, int, int], uniform_power: bool = True) -> Tensor:
    """3-D sin-cos table for a (Tg, Hg, Wg) grid.

    Returns:
        float32 [Tg * Hg * Wg, dim], rows in (t, h, w) raster order. Cached per arguments;
        the returned tensor is shared, do not modify it in place.
    """
    grid = tuple(int(g) for g in grid)
    if len(grid) != 3 or min(grid) < 1:
        raise ValueError(f"grid must be three positive sizes (Tg, Hg, Wg), got {grid}")
    return _sincos_3d_cached(int(dim), grid, bool(uniform_power))


@lru_cache(maxsize=64)
def _sincos_table_1d_cached(dim: int, length: int) -> Tensor:
    with torch.inference_mode(False):
        return sincos_1d(dim, torch.arange(length, dtype=torch.float64)).float()


def sincos_table_1d(dim: int, length: int) -> Tensor:
    """1-D sin-cos table for positions 0..length-1: float32 [length, dim] (cached, shared)."""
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    return _sincos_table_1d_cached(int(dim), int(length))
