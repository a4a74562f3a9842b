"""Encoders of levels k >= 2: pool level k's steps into summaries, then a transformer causal in time.

Level k hands level k+1 its step tokens ``[B, S, Q', D']``. A ``StepPooler`` groups them
``r`` steps at a time (the stride) and pools each group into Q tokens (the *summary*); a
``TemporalEncoder`` embeds the summaries and runs blocks whose attention is block-causal
over steps, so the representation at step s depends on level-k steps < (s+1)*r only.
Trailing level-k steps that do not fill a whole group are dropped (they would describe a
step the clip does not finish).

Positions are rotary, not added: a clip starts anywhere in a video, so a representation
should not carry its absolute step index, and an added time code would let a predictor "beat"
the copy-the-present baseline by predicting the code alone. ``time_encoding="rope"`` rotates
every channel pair by the step (attention then sees step offsets only); tokens of a step are
told apart by a learned per-token embedding. ``"absolute"`` is V-JEPA 2's 3-D rotary layout over
(step, token), whose paired channels turn at different rates and so keep a trace of the step
index (saved models from before the option).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hjepa.models.layers import Block
from hjepa.models.rope import rope_tables, rope_time_tables


def step_causal_mask(
    num_steps: int, tokens_per_step: int, device: torch.device | None = None, context_window: int | None = None
) -> torch.Tensor:
    """bool [S*Q, S*Q]: a token of step s may attend to every token of steps s-W+1..s
    (W = ``context_window``; None: steps 0..s; 1: its own step alone)."""
    step = torch.arange(num_steps, device=device).repeat_interleave(tokens_per_step)
    mask = step[None, :] <= step[:, None]
    if context_window is not None:
        mask = mask & (step[None, :] > step[:, None] - context_window)
    return mask


class StepPooler(nn.Module):
    """Pools ``stride`` consecutive steps of Q' tokens into Q tokens.

    ``attentive``: Q learned queries cross-attend the stride*Q' tokens of the group (each
    token tagged with its offset inside the group), followed by an MLP, as V-JEPA's
    attentive pooler does. ``mean``: average over the group's steps, then adaptive average
    from Q' to Q tokens. When Q' and Q are both square numbers the tokens are read as square
    grids (level 1's crops are square) and pooled in 2-D, so a level pretrained on a 4x4 grid
    sees the same layout when it reads an 8x8 grid (a larger crop): 2x2 blocks, not half-rows.
    Otherwise the pooling runs over the token index.
    """

    def __init__(self, dim: int, stride: int, num_queries: int, kind: str = "attentive", num_heads: int = 4) -> None:
        super().__init__()
        self.stride, self.num_queries, self.kind = stride, num_queries, kind
        if kind == "attentive":
            heads = num_heads if dim % num_heads == 0 else 1
            self.num_heads = heads
            self.queries = nn.Parameter(torch.zeros(num_queries, dim))
            self.offset_embed = nn.Parameter(torch.zeros(stride, dim))
            self.norm = nn.LayerNorm(dim, eps=1e-6)
            self.q = nn.Linear(dim, dim)
            self.kv = nn.Linear(dim, 2 * dim)
            self.proj = nn.Linear(dim, dim)
            self.norm_mlp = nn.LayerNorm(dim, eps=1e-6)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
            nn.init.trunc_normal_(self.queries, std=0.02)
            nn.init.trunc_normal_(self.offset_embed, std=0.02)
        elif kind != "mean":
            raise ValueError(f"pooling must be 'attentive' or 'mean', got {kind!r}")

    def no_weight_decay(self) -> set[str]:
        return {"queries", "offset_embed"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, S, Q', D] -> [B, S // stride, Q, D]."""
        b, s, qin, d = x.shape
        s_out = s // self.stride
        if s_out == 0:
            raise ValueError(f"level input has {s} steps, fewer than the stride {self.stride}: use a longer clip")
        x = x[:, : s_out * self.stride].reshape(b, s_out, self.stride, qin, d)
        if self.kind == "mean":
            x = x.mean(dim=2)  # [B, S', Q', D]
            if qin != self.num_queries:
                x = x.reshape(b * s_out, qin, d).transpose(1, 2)  # [B*S', D, Q']
                side_in, side_out = math.isqrt(qin), math.isqrt(self.num_queries)
                if side_in**2 == qin and side_out**2 == self.num_queries:
                    x = F.adaptive_avg_pool2d(x.reshape(b * s_out, d, side_in, side_in), side_out).flatten(2)
                else:
                    x = F.adaptive_avg_pool1d(x, self.num_queries)
                x = x.transpose(1, 2).reshape(b, s_out, self.num_queries, d)
            return x
        x = x + self.offset_embed[None, None, :, None, :]
        kv = self.kv(self.norm(x.reshape(b * s_out, self.stride * qin, d)))  # [B*S', r*Q', 2D]
        k, v = kv.chunk(2, dim=-1)
        q = self.q(self.queries).expand(b * s_out, -1, -1)  # [B*S', Q, D]
        h = self.num_heads
        split = lambda t: t.reshape(t.shape[0], t.shape[1], h, d // h).transpose(1, 2)  # (B*S', h, L, d/h)
        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        out = self.proj(out.transpose(1, 2).reshape(b * s_out, self.num_queries, d))
        out = out + self.queries  # residual on the queries
        out = out + self.mlp(self.norm_mlp(out))
        return out.reshape(b, s_out, self.num_queries, d)


class TemporalEncoder(nn.Module):
    """Encoder of a level >= 2: summaries of the level below -> step tokens, causal in time.

    Args:
        in_dim: D', width of the level below.
        dim: D, width of this level.
        depth, num_heads: transformer size.
        stride: r, level-below steps per step of this level.
        num_queries: Q tokens per step.
        pooling: ``attentive`` or ``mean``.
        context_window: past steps a token attends to, its own included (None: all).
        time_encoding: ``rope`` (step offsets only) or ``absolute`` (see the module docstring).
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        stride: int,
        num_queries: int,
        pooling: str = "attentive",
        drop_path_rate: float = 0.0,
        context_window: int | None = None,
        time_encoding: str = "rope",
    ) -> None:
        super().__init__()
        self.embed_dim, self.stride, self.num_queries = dim, stride, num_queries
        self.context_window = context_window
        self.time_encoding = time_encoding
        self.pool = StepPooler(in_dim, stride, num_queries, pooling)
        self.embed = nn.Linear(in_dim, dim)
        self.query_embed = nn.Parameter(torch.zeros(num_queries, dim))
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.head_dim = dim // num_heads
        self.blocks = nn.ModuleList(Block(dim, num_heads, drop_path=r, use_rope=True) for r in dpr)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.query_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        return {"query_embed"} | {f"pool.{n}" for n in self.pool.no_weight_decay()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, S_in, Q', D'] level-below step tokens -> [B, S_in // stride, Q, D]."""
        return self._encode(x, self.context_window)

    def encode_steps(self, x: torch.Tensor) -> torch.Tensor:
        """Every step encoded alone (attention within the step): [B, S_in, Q', D'] -> [B, S, Q, D].

        What step s gives depends on the level-below steps it pools and on nothing else: not on
        earlier steps, nor on its index (every step gets the rotary time position 0)."""
        return self._encode(x, 1)

    def _encode(self, x: torch.Tensor, context_window: int | None) -> torch.Tensor:
        x = self.pool(x)
        b, s, q, _ = x.shape
        x = self.embed(x) + self.query_embed[None, None]
        x = x.reshape(b, s * q, self.embed_dim)
        step = torch.arange(s, device=x.device).repeat_interleave(q)
        mask = step_causal_mask(s, q, x.device, context_window)
        if context_window == 1:
            # Each step alone: its index says nothing (and the absolute layout would leave a trace).
            step = torch.zeros_like(step)
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        if self.time_encoding == "rope":
            rope = rope_time_tables(step, self.head_dim, dtype=dtype)
        else:
            token = torch.arange(q, device=x.device).repeat(s)
            pos = torch.stack([step, token, torch.zeros_like(step)], dim=-1)[None]  # [1, S*Q, 3] (t, h, w)
            rope = rope_tables(pos, self.head_dim, dtype=dtype)
        for blk in self.blocks:
            x = blk(x, attn_mask=mask, rope=rope)
        return self.norm(x).reshape(b, s, q, self.embed_dim)
