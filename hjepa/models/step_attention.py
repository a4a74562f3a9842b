"""The future predictor's attention, computed block by block so its cost is linear in clip length.

The predictor's sequence is S context steps of K tokens followed by P query groups of Q tokens
(one group per (context end t, horizon j) pair; K = Q unless the context keeps only part of each
step's tokens, ``LevelConfig.context_keep``). Its pattern (``StepWindowPattern``): a
context token of step s sees context steps s-W+1..s; a query group with context end t sees
context steps t-W+1..t and its own Q tokens. Run as one dense masked attention, every token
scores every other, (S K + P Q)^2 scores of which all but a band are thrown away: the cost of
a step grows with the square of the clip length. Here each context step attends to its window
of W steps and each group to its end's window plus itself, so the scores computed are
S K W K + P Q (W K + Q): linear in S. The result equals the dense masked attention (the entries it
skips are the ones the mask zeroes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class StepWindowPattern:
    """The future predictor's attention pattern in block form.

    Attributes:
        num_steps: S context steps.
        tokens: K tokens per context step.
        ends: long [P], each query group's context end t (< S).
        window: W, context steps a token sees (its own included); S or more: every earlier step.
        group_tokens: Q tokens per query group (None: K).
    """

    num_steps: int
    tokens: int
    ends: Tensor
    window: int
    group_tokens: int | None = None

    @property
    def query_tokens(self) -> int:
        """Q, tokens per query group."""
        return self.tokens if self.group_tokens is None else self.group_tokens

    @property
    def length(self) -> int:
        """N = S*K + P*Q, the sequence length the pattern covers."""
        return self.num_steps * self.tokens + self.ends.shape[0] * self.query_tokens

    def pays(self) -> bool:
        """Whether the block form computes at most half the scores of the dense form (with a
        window as long as the clip it only adds gathering)."""
        w = min(self.window, self.num_steps)
        k, q = self.tokens, self.query_tokens
        blocks = self.num_steps * w * k * k + self.ends.shape[0] * q * (w * k + q)
        return 2 * blocks <= self.length**2

    def dense_mask(self) -> Tensor:
        """The same pattern as a bool [N, N] mask (True = may attend)."""
        s, k, q = self.num_steps, self.tokens, self.query_tokens
        dev = self.ends.device
        ctx_step = torch.arange(s, device=dev).repeat_interleave(k)
        qry_end = self.ends.repeat_interleave(q)
        qry_group = torch.arange(self.ends.shape[0], device=dev).repeat_interleave(q)
        cc = (ctx_step[None, :] <= ctx_step[:, None]) & (ctx_step[None, :] > ctx_step[:, None] - self.window)
        qc = (ctx_step[None, :] <= qry_end[:, None]) & (ctx_step[None, :] > qry_end[:, None] - self.window)
        qq = qry_group[:, None] == qry_group[None, :]
        top = torch.cat([cc, torch.zeros(cc.shape[0], qq.shape[1], dtype=torch.bool, device=dev)], dim=1)
        return torch.cat([top, torch.cat([qc, qq], dim=1)], dim=0)


def step_window_attention(q: Tensor, k: Tensor, v: Tensor, pattern: StepWindowPattern, dropout_p: float = 0.0) -> Tensor:
    """Attention under ``pattern``, block by block.

    Args:
        q, k, v: [B, H, N, d] with N = ``pattern.length`` (context tokens first, step-major).
        pattern: which token sees which.
        dropout_p: attention dropout.

    Returns:
        [B, H, N, d], equal to ``scaled_dot_product_attention`` with ``pattern.dense_mask()``.
    """
    b, h, n, d = q.shape
    s, t, p = pattern.num_steps, pattern.tokens, pattern.ends.shape[0]
    g = pattern.query_tokens
    w = min(pattern.window, s)
    if n != pattern.length:
        raise ValueError(f"sequence of {n} tokens, pattern covers {pattern.length}")
    sq = s * t

    def steps(x: Tensor, count: int, per: int = t) -> Tensor:  # [B, H, count*per, d] -> [B, H, count, per, d]
        return x.reshape(b, h, count, per, d)

    def windows(x: Tensor) -> Tensor:  # context [B, H, S, Q, d] -> [B, H, S, W*Q, d]: steps s-W+1..s
        padded = F.pad(x, (0, 0, 0, 0, w - 1, 0))  # W-1 empty steps before step 0
        # Slot i of step s is step s-W+1+i: W shifted slices side by side (cheap to differentiate).
        return torch.cat([padded[:, :, i:i + s] for i in range(w)], dim=3).reshape(b, h, s, w * t, d)

    k_ctx, v_ctx = windows(steps(k[:, :, :sq], s)), windows(steps(v[:, :, :sq], s))
    # Window slot i of step s holds step s-W+1+i, which exists when s-W+1+i >= 0.
    step_of_slot = torch.arange(s, device=q.device)[:, None] - (w - 1) + torch.arange(w, device=q.device)[None, :]
    valid = (step_of_slot >= 0).repeat_interleave(t, dim=1)  # [S, W*Q]

    def attend(qx: Tensor, kx: Tensor, vx: Tensor, mask: Tensor) -> Tensor:
        # [B, H, G, Q, d] x [B, H, G, K', d] with mask [G, K'] -> [B, H, G*Q, d].
        # Batched products rather than SDPA: many groups of few queries each are where the CPU
        # kernel spends its time on bookkeeping.
        scores = torch.matmul(qx, kx.transpose(-1, -2)) * d**-0.5  # [B, H, G, Q, K]
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        attn = scores.softmax(-1)
        if dropout_p:
            attn = F.dropout(attn, dropout_p)
        return torch.matmul(attn, vx).reshape(b, h, qx.shape[2] * qx.shape[3], d)

    out_ctx = attend(steps(q[:, :, :sq], s), k_ctx, v_ctx, valid)
    if p == 0:
        return out_ctx
    ends = pattern.ends
    k_grp = torch.cat([k_ctx.index_select(2, ends), steps(k[:, :, sq:], p, g)], dim=3)  # [B, H, P, W*K+Q, d]
    v_grp = torch.cat([v_ctx.index_select(2, ends), steps(v[:, :, sq:], p, g)], dim=3)
    mask_grp = torch.cat([valid[ends], valid.new_ones(p, g)], dim=1)
    out_grp = attend(steps(q[:, :, sq:], p, g), k_grp, v_grp, mask_grp)
    return torch.cat([out_ctx, out_grp], dim=2)
