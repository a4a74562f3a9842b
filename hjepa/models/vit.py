"""Video ViT over 3-D tubelets (the level-1 encoder), V-JEPA / V-JEPA 2 compatible.

Tokens are in (t, h, w) raster order: ``index = t * (Hg * Wg) + h * Wg + w`` with the grid
``(Tg, Hg, Wg) = (T // tubelet_size, H // patch_size, W // patch_size)``. Any input size that
the patch divides works without rebuilding the model: sin-cos tables and RoPE angles are made
for the grid at hand (and cached).
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from hjepa.masks.utils import apply_masks
from hjepa.models.layers import LAYER_NORM_EPS, Block
from hjepa.models.pos_embed import sincos_3d
from hjepa.models.rope import rope_tables

PosEmbedKind = Literal["sincos", "rope"]
TemporalAttention = Literal["full", "causal"]


def grid_positions(grid: tuple[int, int, int], device: torch.device | str | None = None) -> Tensor:
    """(t, h, w) coordinates of every token of a grid: long [Tg * Hg * Wg, 3] in raster order."""
    tg, hg, wg = grid
    t, h, w = torch.meshgrid(
        torch.arange(tg, device=device),
        torch.arange(hg, device=device),
        torch.arange(wg, device=device),
        indexing="ij",
    )
    return torch.stack([t.reshape(-1), h.reshape(-1), w.reshape(-1)], dim=1)


def block_causal_mask(time_index: Tensor) -> Tensor:
    """Attention mask letting a token see only tokens of the same or earlier time slots.

    Args:
        time_index: [N] or [B, N] time slot of every token in the sequence.

    Returns:
        bool [1, 1, N, N] or [B, 1, N, N], True = may attend (query row, key column).
    """
    if time_index.ndim == 1:
        time_index = time_index.unsqueeze(0)
    return (time_index[:, :, None] >= time_index[:, None, :]).unsqueeze(1)


def _as_mask_list(masks: Tensor | list[Tensor] | tuple[Tensor, ...]) -> list[Tensor]:
    if isinstance(masks, Tensor):
        return [masks]
    if isinstance(masks, (list, tuple)) and masks and all(isinstance(m, Tensor) for m in masks):
        return list(masks)
    raise TypeError(f"masks must be a long tensor [B, K] or a non-empty list of them, got {type(masks).__name__}")


class PatchEmbed3D(nn.Module):
    """Non-overlapping tubelet embedding: x [B, C, T, H, W] -> tokens [B, Tg * Hg * Wg, D].

    The weights live in a ``Conv3d`` (named ``proj`` as in V-JEPA); as kernel = stride the
    convolution is one matrix product over flattened tubelets, which is how it is computed here
    (measurably faster than the CPU Conv3d path, same numbers up to float rounding).
    """

    def __init__(self, patch_size: int, tubelet_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.proj = nn.Conv3d(
            in_chans,
            embed_dim,
            kernel_size=(tubelet_size, patch_size, patch_size),
            stride=(tubelet_size, patch_size, patch_size),
        )

    def tubelets(self, x: Tensor) -> Tensor:
        """[B, C, T, H, W] -> flattened tubelets [B, N, C * t * p * p] in raster order."""
        B, C, T, H, W = x.shape
        t, p = self.tubelet_size, self.patch_size
        tg, hg, wg = T // t, H // p, W // p
        x = x.reshape(B, C, tg, t, hg, p, wg, p)
        return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(B, tg * hg * wg, C * t * p * p)

    def project(self, tubelets: Tensor) -> Tensor:
        """[..., C * t * p * p] flattened tubelets -> [..., D] tokens."""
        w = self.proj.weight.reshape(self.proj.out_channels, -1)
        return F.linear(tubelets, w, self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(self.tubelets(x))


class VideoViT(nn.Module):
    """Video vision transformer over tubelets.

    Args:
        patch_size, tubelet_size: tubelet of ``tubelet_size x patch_size x patch_size`` pixels.
        in_chans, embed_dim, depth, num_heads, mlp_ratio, qkv_bias: usual ViT sizes.
        drop_path_rate: stochastic depth, linearly increasing from 0 to this over the blocks.
        pos_embed: ``"sincos"`` (fixed 3-D table added after the patch embed, V-JEPA) or
            ``"rope"`` (3-D rotary embedding in every attention layer, V-JEPA 2).
        temporal_attention: ``"full"`` or ``"causal"``; causal = block-causal over time slots,
            a token at slot t attends only to tokens at slots <= t (also with masks).
        grad_checkpointing: recompute every block in backward to save activation memory.
        sincos_uniform_power: channel split of the sin-cos table (see ``pos_embed.py``);
            True is what V-JEPA's pretraining configs use.
        init_std: std of the truncated-normal initialisation of Linear / Conv3d weights.
    """

    def __init__(
        self,
        patch_size: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        pos_embed: PosEmbedKind = "sincos",
        temporal_attention: TemporalAttention = "full",
        grad_checkpointing: bool = False,
        sincos_uniform_power: bool = True,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        if pos_embed not in ("sincos", "rope"):
            raise ValueError(f"pos_embed must be 'sincos' or 'rope', got {pos_embed!r}")
        if temporal_attention not in ("full", "causal"):
            raise ValueError(f"temporal_attention must be 'full' or 'causal', got {temporal_attention!r}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        for name, value in (("patch_size", patch_size), ("tubelet_size", tubelet_size), ("depth", depth)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.in_chans = in_chans
        self.embed_dim = self.num_features = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.pos_embed = pos_embed
        self.temporal_attention = temporal_attention
        self.grad_checkpointing = grad_checkpointing
        self.sincos_uniform_power = sincos_uniform_power

        self.patch_embed = PatchEmbed3D(patch_size, tubelet_size, in_chans, embed_dim)
        rates = [drop_path_rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=rates[i],
                use_rope=pos_embed == "rope",
            )
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        # Per (grid, device) cache of sin-cos tables / positions; not part of the state dict.
        self._grid_cache: dict[tuple, Tensor] = {}
        self._init_weights(init_std)

    # ------------------------------------------------------------------ init
    def _init_weights(self, std: float) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv3d)):
                nn.init.trunc_normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # As V-JEPA: shrink the residual-branch outputs with depth so the stream's variance
        # does not grow with the number of blocks.
        with torch.no_grad():
            for layer_id, blk in enumerate(self.blocks, start=1):
                blk.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
                blk.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))

    def no_weight_decay(self) -> set[str]:
        """Parameter names that must not get weight decay: biases and LayerNorm weights (1-D)."""
        return {name for name, p in self.named_parameters() if p.ndim <= 1}

    # ------------------------------------------------------------------ geometry
    def grid(self, T: int, H: int, W: int) -> tuple[int, int, int]:
        """Token grid (Tg, Hg, Wg) for an input of T frames of H x W pixels.

        Raises:
            ValueError: naming the sizes when T is not a multiple of the tubelet or H / W of the patch.
        """
        bad = []
        if T % self.tubelet_size or T < self.tubelet_size:
            bad.append(f"T={T} is not a positive multiple of tubelet_size={self.tubelet_size}")
        if H % self.patch_size or H < self.patch_size:
            bad.append(f"H={H} is not a positive multiple of patch_size={self.patch_size}")
        if W % self.patch_size or W < self.patch_size:
            bad.append(f"W={W} is not a positive multiple of patch_size={self.patch_size}")
        if bad:
            raise ValueError("input size (T, H, W) = " + f"({T}, {H}, {W}) does not fit the encoder: " + "; ".join(bad))
        return T // self.tubelet_size, H // self.patch_size, W // self.patch_size

    def num_tokens(self, T: int, H: int, W: int) -> int:
        tg, hg, wg = self.grid(T, H, W)
        return tg * hg * wg

    def _cached(self, kind: str, grid: tuple[int, int, int], device: torch.device, dtype: torch.dtype) -> Tensor:
        key = (kind, grid, str(device), dtype)
        hit = self._grid_cache.get(key)
        if hit is None:
            with torch.inference_mode(False):  # see _make_cached
                hit = self._make_cached(kind, grid, device, dtype)
            if len(self._grid_cache) > 32:  # many different input sizes: keep memory bounded
                self._grid_cache.clear()
            self._grid_cache[key] = hit
        return hit

    def _make_cached(self, kind: str, grid: tuple[int, int, int], device: torch.device, dtype: torch.dtype) -> Tensor:
        """Build a cache entry as a normal tensor even under inference mode (e.g. a validation loop):
        an inference tensor could not be saved for backward in a later training step."""
        if kind == "sincos":
            return sincos_3d(self.embed_dim, grid, self.sincos_uniform_power).to(device=device, dtype=dtype, copy=True)
        if kind == "pos":
            return grid_positions(grid, device=device)
        if kind == "causal":  # block-causal mask over all tokens of the grid, [1, 1, N, N]
            per_slot = grid[1] * grid[2]
            return block_causal_mask(torch.arange(grid[0] * per_slot, device=device) // per_slot)
        if kind == "rope":  # tables for the full grid, [2 (cos, sin), 1, N, head_dim]
            pos = grid_positions(grid, device=device).unsqueeze(0)
            return torch.stack(rope_tables(pos, self.embed_dim // self.num_heads, dtype=dtype))
        raise KeyError(kind)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, masks: Tensor | list[Tensor] | None = None) -> Tensor:
        """Encode a clip.

        Args:
            x: [B, C, T, H, W] float clip.
            masks: None, or a long [B, K] tensor / a list of M such tensors of token indices
                (raster order) to keep; only those tokens are encoded.

        Returns:
            [B, N, D] tokens (N = Tg * Hg * Wg), or [B * M, K, D] with masks (mask set m is
            rows m * B .. (m + 1) * B - 1), after the final LayerNorm.
        """
        if x.ndim != 5:
            raise ValueError(f"expected a clip [B, C, T, H, W], got shape {tuple(x.shape)}")
        B, C, T, H, W = x.shape
        if C != self.in_chans:
            raise ValueError(f"clip has C={C} channels, the encoder expects in_chans={self.in_chans}")
        grid = self.grid(T, H, W)
        n = grid[0] * grid[1] * grid[2]
        tubelets = self.patch_embed.tubelets(x)  # [B, N, C*t*p*p]
        idx: Tensor | None = None
        if masks is not None:
            mask_list = [m.to(x.device, non_blocking=True) for m in _as_mask_list(masks)]
            self._check_masks(mask_list, B, n)
            # Choose the tubelets before embedding them: tokens left out cost nothing.
            tubelets = apply_masks(tubelets, mask_list)  # [B*M, K, C*t*p*p]
            idx = mask_list[0] if len(mask_list) == 1 else torch.cat(mask_list, dim=0)  # [B*M, K]
        tokens = self.patch_embed.project(tubelets)  # [B*M, K or N, D]
        if self.pos_embed == "sincos":
            table = self._cached("sincos", grid, x.device, tokens.dtype)  # [N, D]
            tokens = tokens + (table if idx is None else table[idx.long()])

        attn_mask, rope = self._attention_inputs(grid, idx, x.device, tokens.dtype)
        use_ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for blk in self.blocks:
            if use_ckpt:
                tokens = checkpoint(blk, tokens, attn_mask, None, rope, use_reentrant=False)
            else:
                tokens = blk(tokens, attn_mask=attn_mask, rope=rope)
        return self.norm(tokens)

    def _check_masks(self, masks: list[Tensor], batch: int, n: int) -> None:
        k = masks[0].shape[-1] if masks[0].ndim == 2 else None
        for i, m in enumerate(masks):
            if m.dtype not in (torch.int64, torch.int32):
                raise TypeError(f"masks[{i}] must hold integer token indices, got {m.dtype}")
            if m.ndim != 2 or m.shape[0] != batch or m.shape[1] != k:
                raise ValueError(
                    f"masks[{i}] has shape {tuple(m.shape)}; every mask must be [B={batch}, K] with the same K"
                    f" (first mask K={k})"
                )
        if k:
            # One host sync for all mask sets: an out-of-range index would otherwise fail deep
            # inside gather (or as a device-side assert on GPU).
            lo, hi = torch.stack([torch.stack(torch.aminmax(m)) for m in masks]).aminmax(dim=0)
            lo, hi = int(lo[0]), int(hi[1])
            if lo < 0 or hi >= n:
                raise ValueError(f"masks hold indices in [{lo}, {hi}], outside the {n} tokens of this input")

    def _attention_inputs(
        self, grid: tuple[int, int, int], idx: Tensor | None, device: torch.device, dtype: torch.dtype
    ) -> tuple[Tensor | None, tuple[Tensor, Tensor] | None]:
        """Block-causal mask (or None) and RoPE tables (or None) for the tokens being encoded."""
        per_slot = grid[1] * grid[2]
        rope_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        attn_mask = None
        if self.temporal_attention == "causal":
            if idx is None:
                attn_mask = self._cached("causal", grid, device, torch.bool)
            else:
                attn_mask = block_causal_mask(idx.long() // per_slot)  # from the kept tokens' time slots
        rope = None
        if self.pos_embed == "rope":
            if idx is None:
                tables = self._cached("rope", grid, device, rope_dtype)
                rope = (tables[0], tables[1])
            else:
                pos = self._cached("pos", grid, device, torch.long)[idx.long()]  # [B*M, K, 3]
                rope = rope_tables(pos, self.embed_dim // self.num_heads, dtype=rope_dtype)
        return attn_mask, rope

    def extra_repr(self) -> str:
        return (
            f"patch={self.tubelet_size}x{self.patch_size}x{self.patch_size}, pos_embed={self.pos_embed}, "
            f"temporal_attention={self.temporal_attention}"
        )


# ---------------------------------------------------------------------- registry
ENCODERS: dict[str, Callable[..., VideoViT]] = {}


def _register(name: str, **arch: float) -> Callable[..., VideoViT]:
    def factory(**overrides) -> VideoViT:
        return VideoViT(**{**arch, **overrides})

    factory.__name__ = f"vit_{name}"
    factory.__doc__ = f"VideoViT '{name}': " + ", ".join(f"{k}={v}" for k, v in arch.items())
    ENCODERS[name] = factory
    return factory


vit_micro = _register("micro", embed_dim=64, depth=2, num_heads=4)  # CPU tests
vit_tiny = _register("tiny", embed_dim=192, depth=12, num_heads=3)
vit_small = _register("small", embed_dim=384, depth=12, num_heads=6)
vit_base = _register("base", embed_dim=768, depth=12, num_heads=12)
vit_large = _register("large", embed_dim=1024, depth=24, num_heads=16)
vit_huge = _register("huge", embed_dim=1280, depth=32, num_heads=16)
vit_giant = _register("giant", embed_dim=1408, depth=40, num_heads=22, mlp_ratio=48 / 11)  # V-JEPA 2 ViT-g


def build_encoder(name: str, **overrides) -> VideoViT:
    """Build a registered encoder; ``overrides`` are VideoViT keywords (e.g. pos_embed="rope")."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
    return ENCODERS[name](**overrides)
