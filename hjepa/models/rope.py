"""3-D rotary position embedding (RoPE) in the formulation of V-JEPA 2.

The head dimension ``hd`` is split into three equal, even-sized segments for the time (depth),
height and width axes, ``s = 2 * ((hd // 3) // 2)`` channels each; the remaining
``hd - 3 * s`` channels are left unrotated. Within a segment of size ``s`` channel pairs
``(2i, 2i + 1)`` are rotated by ``pos * omega`` with ``omega_j = 10000 ** (-j / (s / 2))``.

V-JEPA 2 builds its cos/sin tables by *tiling* the ``s / 2`` frequencies twice
(``[f_0 .. f_{s/2-1}, f_0 .. f_{s/2-1}]``) while it pairs channels *interleaved*
(``(0, 1), (2, 3), ...``). So channel ``2i`` and ``2i + 1`` of one pair see different frequencies.
The released checkpoints (and transformers' ``VJEPA2Model``) were trained with exactly this
layout, so it is kept here on purpose: changing it would silently break those weights.

All three segments and the unrotated tail are folded into one pair of ``[N, hd]`` tables
(cos = 1, sin = 0 on the tail), and the sign of the pair rotation is folded into the sin table,
so applying RoPE is ``x * cos + swap_pairs(x) * sin``: one copy and two fused multiply-adds on
the whole head instead of three slices, a negation, a stack and a concatenation.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rope_axis_dim(head_dim: int) -> int:
    """Channels per axis (time, height, width) that V-JEPA 2 rotates for a given head size."""
    return 2 * ((head_dim // 3) // 2)


def _axis_angles(pos: Tensor, seg: int) -> Tensor:
    """pos: [..., N] float positions along one axis -> angles [..., N, seg // 2]."""
    omega = torch.arange(seg // 2, dtype=pos.dtype, device=pos.device)
    omega = omega / (seg / 2.0)
    omega = 1.0 / 10000**omega
    return pos.unsqueeze(-1) * omega


def rope_tables(pos: Tensor, head_dim: int, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """cos / signed-sin tables for 3-D RoPE.

    Args:
        pos: [..., N, 3] (t, h, w) grid positions (any numeric dtype; integer grid coordinates).
        head_dim: size of one attention head.
        dtype: float dtype of the tables (default float32; float64 positions stay float64).

    Returns:
        (cos, sin), each [..., N, head_dim]. ``sin`` carries the rotation's sign: channel
        ``2i`` holds ``-sin``, channel ``2i + 1`` holds ``+sin`` (see :func:`apply_rope`).
    """
    if pos.shape[-1] != 3:
        raise ValueError(f"RoPE positions must end in 3 (t, h, w) coordinates, got shape {tuple(pos.shape)}")
    if dtype is None:
        dtype = pos.dtype if pos.dtype in (torch.float32, torch.float64) else torch.float32
    seg = rope_axis_dim(head_dim)
    if seg == 0:
        raise ValueError(f"head_dim={head_dim} is too small for 3-D RoPE (needs at least 6 channels)")
    pos = pos.to(dtype)
    parts_cos, parts_sin = [], []
    for axis in range(3):
        ang = _axis_angles(pos[..., axis], seg)  # [..., N, seg/2]
        c, s = ang.cos(), ang.sin()
        # Tiled (not interleaved) frequencies: the layout the V-JEPA 2 weights were trained with.
        parts_cos += [c, c]
        parts_sin += [s, s]
    rest = head_dim - 3 * seg
    if rest:
        shape = (*pos.shape[:-1], rest)
        parts_cos.append(torch.ones(shape, dtype=dtype, device=pos.device))
        parts_sin.append(torch.zeros(shape, dtype=dtype, device=pos.device))
    cos = torch.cat(parts_cos, dim=-1)
    sign = torch.ones(head_dim, dtype=dtype, device=pos.device)
    sign[0::2] = -1.0
    return cos, torch.cat(parts_sin, dim=-1) * sign


def swap_pairs(x: Tensor) -> Tensor:
    """(x0, x1, x2, x3, ...) -> (x1, x0, x3, x2, ...) over the last dimension (even size)."""
    return x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate queries or keys: ``x * cos + swap_pairs(x) * sin``.

    With the tables of :func:`rope_tables` this is, per channel pair ``(x0, x1)`` with angles
    ``(a0, a1)``: ``(x0 cos a0 - x1 sin a0, x1 cos a1 + x0 sin a1)``, i.e. V-JEPA 2's
    ``x * cos + (-x1, x0) * sin``.

    Args:
        x: [..., head_dim] queries or keys, e.g. [B, heads, N, head_dim].
        cos, sin: tables broadcastable to ``x`` (e.g. [1, N, head_dim] for the layout above;
            insert singleton dims for other layouts).

    Returns:
        Same shape as ``x``.
    """
    cos = cos.to(x.dtype)
    sin = sin.to(x.dtype)
    return torch.addcmul(x * cos, swap_pairs(x), sin)


def rope_time_tables(steps: Tensor, head_dim: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """cos / signed-sin tables for 1-D RoPE over time, every channel pair rotated.

    Unlike :func:`rope_tables` (3-D, V-JEPA 2's tiled layout, kept for its weights) both channels
    of a pair ``(2i, 2i + 1)`` share frequency ``omega_i = 10000 ** (-i / (head_dim / 2))``: a plain
    rotation, so the attention logit between two tokens depends on their step offset only.

    Args:
        steps: [N] step index of every token (any numeric dtype).
        head_dim: size of one attention head (even).

    Returns:
        (cos, sin), each [1, N, head_dim], for :func:`apply_rope` (sign folded into ``sin``).
    """
    if head_dim % 2:
        raise ValueError(f"1-D RoPE needs an even head size, got {head_dim}")
    omega = 1.0 / 10000 ** (torch.arange(head_dim // 2, dtype=dtype, device=steps.device) / (head_dim / 2.0))
    ang = steps.to(dtype)[:, None] * omega  # [N, hd/2]
    cos = ang.cos().repeat_interleave(2, dim=-1)
    sin = ang.sin().repeat_interleave(2, dim=-1)
    sign = torch.ones(head_dim, dtype=dtype, device=steps.device)
    sign[0::2] = -1.0
    return cos[None], (sin * sign)[None]
