"""Transformer building blocks shared by the encoders and predictors.

Parameter names follow V-JEPA (``qkv``, ``proj``, ``norm1``, ``attn``, ``norm2``, ``mlp.fc1``,
``mlp.fc2``) so its checkpoints load by prefix stripping only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hjepa.models.rope import apply_rope, rope_tables
from hjepa.models.step_attention import StepWindowPattern, step_window_attention

LAYER_NORM_EPS = 1e-6  # V-JEPA's (and transformers' VJEPA2) LayerNorm epsilon


class MLP(nn.Module):
    """Two-layer perceptron ``fc2(act(fc1(x)))``; x: [..., in_features] -> [..., out_features]."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection and optional 3-D RoPE.

    Uses ``F.scaled_dot_product_attention``; without a mask it is called mask-free so the fused
    (flash / memory-efficient) kernels can run.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        use_rope: bool = False,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.use_rope = use_rope
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | StepWindowPattern | None = None,
        pos: Tensor | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """
        Args:
            x: [B, N, D].
            attn_mask: bool, True = may attend, broadcastable to [B, heads, N, N]; or a
                ``StepWindowPattern``, computed block by block; or None.
            pos: [B or 1, N, 3] (t, h, w) positions, used only with ``use_rope``.
            rope: precomputed ``rope_tables(pos, head_dim)`` (cos, sin) to skip recomputing them
                in every layer; takes precedence over ``pos``.

        Returns:
            [B, N, D].
        """
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim)
        if self.use_rope:
            if rope is None:
                if pos is None:
                    raise ValueError("Attention built with use_rope=True needs pos [B or 1, N, 3]")
                table_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
                rope = rope_tables(pos, self.head_dim, dtype=table_dtype)
            cos, sin = (t[:, :, None, None, :] for t in rope)  # [B or 1, N, 1, 1, head_dim]
            # Rotate queries and keys in one pass, in the projection's own layout (no copies first).
            qk = apply_rope(qkv[:, :, :2], cos, sin)  # [B, N, 2, heads, head_dim]
            q, k = qk.permute(2, 0, 3, 1, 4).unbind(0)
            v = qkv[:, :, 2].transpose(1, 2)
        else:
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, N, head_dim]
        dropout = self.attn_drop if self.training else 0.0
        if attn_mask is None:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        elif isinstance(attn_mask, StepWindowPattern):
            out = step_window_attention(q, k, v, attn_mask, dropout_p=dropout)
        else:
            if attn_mask.dtype != torch.bool:
                raise TypeError(f"attn_mask must be bool (True = may attend), got {attn_mask.dtype}")
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        out = out.transpose(1, 2).reshape(B, N, D)  # [B, N, heads * head_dim]
        return self.proj(out)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        use_rope: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, use_rope=use_rope)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = MLP(dim, hidden_features=int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | StepWindowPattern | None = None,
        pos: Tensor | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """
        Args:
            x: [B, N, D].
            attn_mask: bool, True = may attend, broadcastable to [B, heads, N, N]; or a
                ``StepWindowPattern``, computed block by block; or None.
            pos: [B or 1, N, 3] (t, h, w) positions, used only when the block uses RoPE.
            rope: optional precomputed (cos, sin) tables, see :class:`Attention`.

        Returns:
            [B, N, D].
        """
        x = x + self.drop_path(self.attn(self.norm1(x), attn_mask=attn_mask, pos=pos, rope=rope))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x
