"""The attentive pooler: M learned queries cross-attend N tokens (V-JEPA's evaluation pooler)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention + MLP on the queries; the tokens are only read.

    ``norm_tokens=False`` reads the tokens without a per-token LayerNorm, for features that are
    already standardised as a whole: a per-token norm would erase how strongly a token stands
    out, which is what a probe of "which token carries it" reads.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 norm_tokens: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"head width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim) if norm_tokens else nn.Identity()
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.dropout = dropout

    def forward(self, q: Tensor, x: Tensor) -> Tensor:
        """q: [B, M, D] queries, x: [B, N, D] tokens -> [B, M, D]."""
        B, M, D = q.shape
        h = self.num_heads
        qh = self.q(self.norm_q(q)).view(B, M, h, D // h).transpose(1, 2)  # (B, h, M, D/h)
        k, v = self.kv(self.norm_kv(x)).view(B, -1, 2, h, D // h).permute(2, 0, 3, 1, 4)  # 2 x (B, h, N, D/h)
        a = F.scaled_dot_product_attention(qh, k, v, dropout_p=self.dropout if self.training else 0.0)
        q = q + self.proj(a.transpose(1, 2).reshape(B, M, D))
        return q + self.mlp(self.norm_mlp(q))


class AttentivePooler(nn.Module):
    """``num_queries`` learned queries, ``depth`` :class:`CrossAttentionBlock` s over the tokens, a final norm.

    The queries start at zero; :meth:`reset_queries` draws them (truncated normal, std 0.02). The
    constructor draws them unless ``init_queries`` is False, for an owner that draws its own
    parameters in a fixed order and calls :meth:`reset_queries` itself.

    Args:
        dim: token width D.
        num_queries: M, one pooled vector per query.
        depth, num_heads, mlp_ratio, dropout, norm_tokens: the cross-attention blocks.
    """

    def __init__(self, dim: int, num_queries: int = 1, depth: int = 1, num_heads: int = 4, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, init_queries: bool = True, norm_tokens: bool = True) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.zeros(num_queries, dim))
        self.blocks = nn.ModuleList(CrossAttentionBlock(dim, num_heads, mlp_ratio, dropout, norm_tokens)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        if init_queries:
            self.reset_queries()

    def reset_queries(self) -> None:
        nn.init.trunc_normal_(self.queries, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, N, D] tokens -> [B, M, D]."""
        q = self.queries.expand(x.shape[0], -1, -1)
        for block in self.blocks:
            q = block(q, x)
        return self.norm(q)
