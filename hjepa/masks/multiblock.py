"""V-JEPA multi-block 3-D masks.

For one block spec, every sample of a batch gets ``num_blocks`` boxes of the same size (drawn
once per batch) at independent random places in the (Tg, Hg, Wg) token grid. The **target**
(what the predictor must predict) is the union of the boxes; the **context** (what the context
encoder sees) is its complement. Both are returned as sorted token indices in raster order
``t * Hg * Wg + h * Wg + w``.

A batch needs one K per mask tensor, but unions of random boxes differ in size, so every row is
trimmed to the batch minimum, as V-JEPA does. V-JEPA keeps the first K indices, which in raster
order always drops the tokens of the last time slots and bottom rows; here a uniformly random
subset of K indices is kept instead (still sorted), so no region is dropped systematically.
Context and target stay disjoint.

Defaults are V-JEPA's: short-range, 8 blocks at spatial scale 0.15, and long-range, 2 blocks at
0.7, aspect ratio 0.75..1.5, both spanning the whole clip in time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

Grid = tuple[int, int, int]


@dataclass(frozen=True)
class BlockMaskSpec:
    """One family of target blocks.

    Attributes:
        num_blocks: boxes per sample; the target is their union.
        spatial_scale: (min, max) fraction of the Hg x Wg plane one box covers.
        temporal_scale: (min, max) fraction of the Tg time slots one box spans.
        aspect_ratio: (min, max) height / width of a box.
    """

    num_blocks: int = 8
    spatial_scale: tuple[float, float] = (0.15, 0.15)
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)

    def __post_init__(self) -> None:
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        for name in ("spatial_scale", "temporal_scale", "aspect_ratio"):
            lo, hi = getattr(self, name)
            upper = math.inf if name == "aspect_ratio" else 1.0
            if not (0 < lo <= hi <= upper):
                raise ValueError(f"{name} must satisfy 0 < min <= max <= {upper}, got ({lo}, {hi})")


SHORT_RANGE = BlockMaskSpec(num_blocks=8, spatial_scale=(0.15, 0.15))
LONG_RANGE = BlockMaskSpec(num_blocks=2, spatial_scale=(0.7, 0.7))
DEFAULT_MASK_SPECS: tuple[BlockMaskSpec, ...] = (SHORT_RANGE, LONG_RANGE)


def _uniform(lo: float, hi: float, g: torch.Generator) -> float:
    return lo + float(torch.rand((), generator=g)) * (hi - lo)


def sample_block_size(spec: BlockMaskSpec, grid: Grid, g: torch.Generator) -> tuple[int, int, int]:
    """(t, h, w) size of the boxes for one batch, each at least 1 and inside the grid."""
    tg, hg, wg = grid
    t = max(1, min(tg, int(tg * _uniform(*spec.temporal_scale, g))))
    area = hg * wg * _uniform(*spec.spatial_scale, g)
    ar = _uniform(*spec.aspect_ratio, g)
    h = max(1, min(hg, int(round(math.sqrt(area * ar)))))
    w = max(1, min(wg, int(round(math.sqrt(area / ar)))))
    if (t, h, w) == (tg, hg, wg) and hg * wg > 1:
        # A box covering the whole grid leaves no context on small grids (e.g. 0.7 of 4 x 4 rounds
        # up to 4 x 4): give up one row or column of the longer side.
        if h >= w:
            h -= 1
        else:
            w -= 1
    return t, h, w


def _trim(member: Tensor, k: int, g: torch.Generator) -> Tensor:
    """member: bool [B, N] -> long [B, k], a random size-k subset of each row's True indices, sorted."""
    scores = torch.rand(member.shape, generator=g)
    scores = scores.masked_fill(~member, 2.0)  # non-members sort last
    keep = scores.argsort(dim=1)[:, :k]
    return keep.sort(dim=1).values


def sample_multiblock(
    grid: Grid,
    spec: BlockMaskSpec,
    batch_size: int,
    generator: torch.Generator,
    min_context: int = 1,
    max_tries: int = 20,
) -> tuple[Tensor, Tensor]:
    """Context and target indices for one block spec.

    Args:
        grid: (Tg, Hg, Wg) token grid.
        spec: block family.
        batch_size: B.
        generator: CPU torch.Generator, the only source of randomness.
        min_context: fewest context tokens a sample may have; placements leaving fewer are redrawn.

    Returns:
        (context long [B, K_ctx], target long [B, K_tgt]), sorted, disjoint per row.
    """
    tg, hg, wg = grid
    n = tg * hg * wg
    t, h, w = sample_block_size(spec, grid, generator)
    coords = torch.stack(
        torch.meshgrid(torch.arange(tg), torch.arange(hg), torch.arange(wg), indexing="ij"), dim=-1
    ).reshape(1, 1, n, 3)  # [1, 1, N, 3]
    size = torch.tensor([t, h, w])
    room = torch.tensor([tg - t + 1, hg - h + 1, wg - w + 1])

    def draw(rows: int) -> Tensor:
        start = (torch.rand(rows, spec.num_blocks, 3, generator=generator) * room).long()  # [rows, nb, 3]
        start = start.unsqueeze(2)  # [rows, nb, 1, 3]
        inside = ((coords >= start) & (coords < start + size)).all(-1)  # [rows, nb, N]
        return inside.any(1)  # [rows, N] True = target

    target = draw(batch_size)
    for _ in range(max_tries):
        bad = (~target).sum(1) < min_context
        if not bad.any():
            break
        target[bad] = draw(int(bad.sum()))
    else:
        raise RuntimeError(
            f"mask spec {spec} leaves fewer than {min_context} context tokens on grid {grid} "
            f"after {max_tries} draws (boxes of {t}x{h}x{w} tokens); lower spatial_scale or num_blocks"
        )
    context = ~target
    k_tgt = int(target.sum(1).min())
    k_ctx = int(context.sum(1).min())
    return _trim(context, k_ctx, generator), _trim(target, k_tgt, generator)


class MultiBlockMasks:
    """Draws one (context, target) mask pair per block spec for a batch.

    Args:
        grid: (Tg, Hg, Wg) token grid (see :meth:`for_input`).
        specs: block families; default V-JEPA's short-range + long-range pair.
        seed: seed of the internal torch.Generator (deterministic sequence of batches).
    """

    def __init__(
        self,
        grid: Grid,
        specs: tuple[BlockMaskSpec, ...] | list[BlockMaskSpec] = DEFAULT_MASK_SPECS,
        seed: int = 0,
    ) -> None:
        grid = tuple(int(v) for v in grid)
        if len(grid) != 3 or min(grid) < 1:
            raise ValueError(f"grid must be three positive sizes (Tg, Hg, Wg), got {grid}")
        if not specs:
            raise ValueError("at least one BlockMaskSpec is needed")
        self.grid: Grid = grid  # type: ignore[assignment]
        self.specs = tuple(specs)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    @classmethod
    def for_input(
        cls, frames: int, height: int, width: int, patch_size: int = 16, tubelet_size: int = 2, **kwargs
    ) -> "MultiBlockMasks":
        """Masks for clips of ``frames x height x width`` pixels and the given tubelet."""
        if frames % tubelet_size or height % patch_size or width % patch_size:
            raise ValueError(
                f"input (T, H, W) = ({frames}, {height}, {width}) is not divisible by the tubelet "
                f"({tubelet_size}, {patch_size}, {patch_size})"
            )
        return cls((frames // tubelet_size, height // patch_size, width // patch_size), **kwargs)

    def __call__(self, batch_size: int) -> tuple[list[Tensor], list[Tensor]]:
        """(masks_enc, masks_pred): lists with one long [B, K_i] tensor per spec."""
        enc, pred = [], []
        for spec in self.specs:
            c, t = sample_multiblock(self.grid, spec, batch_size, self.generator)
            enc.append(c)
            pred.append(t)
        return enc, pred
