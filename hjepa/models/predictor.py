"""Predictors: narrow transformers that map context tokens to predicted target tokens.

Two modes:

- ``FuturePredictor`` (every level): from context steps <= t, predict the level's target
  tokens at steps t+1..t+h. All (t, j) pairs of a clip are predicted in one pass: the
  sequence is the context tokens followed by one group of query tokens per pair, and a
  block-causal mask lets a context token see context steps <= its own, and a query group
  see context steps <= t plus its own group. So a prediction for t+j never depends on
  input after step t, exactly.
- ``MaskedPredictor`` (level 1, optional): V-JEPA's masked objective; from the visible
  tokens of a window, predict the target tokens of the masked blocks.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from hjepa.models.config import PredictorConfig
from hjepa.models.layers import Block
from hjepa.models.pos_embed import sincos_1d, sincos_3d
from hjepa.models.rope import rope_time_tables
from hjepa.models.step_attention import StepWindowPattern


def future_pattern(
    num_steps: int, tokens_per_step: int, pairs: torch.Tensor, context_window: int | None = None,
    group_tokens: int | None = None,
) -> StepWindowPattern:
    """The predictor's attention pattern: context steps followed by query groups.

    Args:
        num_steps: S context steps, each ``tokens_per_step`` (K) tokens.
        pairs: long [P, 2] of (context end t, horizon j); group p sees context steps <= t.
        context_window: W, a context token of step s sees steps s-W+1..s, and a query group
            with context end t steps t-W+1..t; None: every earlier step.
        group_tokens: Q tokens per query group (None: K).
    """
    window = num_steps if context_window is None else context_window
    return StepWindowPattern(num_steps, tokens_per_step, pairs[:, 0], window,
                             None if group_tokens == tokens_per_step else group_tokens)


class FuturePredictor(nn.Module):
    """Predicts a level's target tokens h steps ahead.

    Args:
        in_dim: D, width of the level's tokens (context in, prediction out).
        cfg: width / depth / heads of the predictor.
        horizon: h, the largest horizon (a learned embedding per horizon tells queries apart).
        num_tokens: Q for levels >= 2 (learned per-token embedding); None for level 1,
            whose Q tokens are the spatial patches and get 2-D sin-cos positions from ``grid_hw``.
        latent_dim: dimension of z (0: no latent).
        context_window: past steps a token attends to (None: all); see ``future_pattern``.
        time_encoding: ``rope`` or ``absolute`` (``LevelConfig.time_encoding``).
        action_dim: width of one step's action vector (``hjepa.models.actions``; 0: no actions).
            The query for step t+j gets a linear map of the vectors of steps t+1..t+j, one
            weight block per offset (so their order counts), zero past j. The map starts at
            zero: an action-conditioned predictor starts as the action-free one, so a level
            pretrained on video alone can be fine-tuned with actions from where it was.

    Time: with ``rope`` a token's step (a query's: its target step t+j)
    enters only as a rotary angle in attention, so what the predictor computes depends on step
    offsets, never on where a step sits in the clip; ``absolute`` adds sin-cos step indices.
    """

    def __init__(
        self,
        in_dim: int,
        cfg: PredictorConfig,
        horizon: int,
        num_tokens: int | None = None,
        latent_dim: int = 0,
        context_window: int | None = None,
        time_encoding: str = "rope",
        action_dim: int = 0,
    ) -> None:
        super().__init__()
        pd = cfg.embed_dim
        self.in_dim, self.dim, self.horizon = in_dim, pd, horizon
        self.anchor = cfg.anchor_queries
        self.rope_time = time_encoding == "rope"
        self.context_window = context_window
        self.head_dim = pd // cfg.num_heads
        self.embed = nn.Linear(in_dim, pd)
        self.query_token = nn.Parameter(torch.zeros(1, 1, pd))
        self.horizon_embed = nn.Parameter(torch.zeros(horizon, pd))
        self.token_embed = nn.Parameter(torch.zeros(num_tokens, pd)) if num_tokens else None
        self.z_embed = nn.Linear(latent_dim, pd, bias=False) if latent_dim else None
        dpr = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(Block(pd, cfg.num_heads, drop_path=d, use_rope=self.rope_time) for d in dpr)
        self.norm = nn.LayerNorm(pd, eps=1e-6)
        self.head = nn.Linear(pd, in_dim)
        self.action_proj = nn.Linear(horizon * action_dim, pd) if action_dim else None
        nn.init.trunc_normal_(self.query_token, std=0.02)
        nn.init.trunc_normal_(self.horizon_embed, std=0.02)
        if self.token_embed is not None:
            nn.init.trunc_normal_(self.token_embed, std=0.02)
        self.apply(_init_linear)
        if self.action_proj is not None:
            nn.init.zeros_(self.action_proj.weight)
            nn.init.zeros_(self.action_proj.bias)

    def no_weight_decay(self) -> set[str]:
        return {"query_token", "horizon_embed", "token_embed"}

    def _token_pos(self, q: int, grid_hw: tuple[int, int] | None, ref: torch.Tensor) -> torch.Tensor:
        """Per-token position inside a step: [Q, pd]."""
        if self.token_embed is not None:
            if q != self.token_embed.shape[0]:
                raise ValueError(f"predictor built for {self.token_embed.shape[0]} tokens per step, got {q}")
            return self.token_embed
        if grid_hw is None or grid_hw[0] * grid_hw[1] != q:
            raise ValueError(f"level-1 predictor needs grid_hw with Hg*Wg == {q}, got {grid_hw}")
        return sincos_3d(self.dim, (1, *grid_hw)).to(ref)

    def _action_term(self, actions: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """[B, S_a, A] step action vectors -> [B, P, pd], what each pair's queries add."""
        if actions.shape[-1] * self.horizon != self.action_proj.in_features:
            raise ValueError(f"step actions of width {actions.shape[-1]}; the predictor was built for "
                             f"{self.action_proj.in_features // self.horizon}")
        need = int((pairs[:, 0] + pairs[:, 1]).max()) + 1
        if actions.shape[1] < need:
            raise ValueError(f"actions cover {actions.shape[1]} steps; the predictions reach step {need - 1}")
        offsets = torch.arange(1, self.horizon + 1, device=pairs.device)  # [h]
        steps = (pairs[:, :1] + offsets).clamp(max=actions.shape[1] - 1)  # [P, h]: t+1 .. t+h
        used = (offsets <= pairs[:, 1:]).to(actions.dtype)  # [P, h]: only t+1 .. t+j
        spans = actions[:, steps] * used[None, :, :, None]  # [B, P, h, A]
        return self.action_proj(spans.flatten(2))

    def forward(
        self,
        context: torch.Tensor,
        pairs: torch.Tensor,
        grid_hw: tuple[int, int] | None = None,
        z: torch.Tensor | None = None,
        token_index: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict target tokens for every (t, j) pair.

        Args:
            context: [B, S, K, D] context tokens of steps 0..S-1; K = Q unless ``token_index``.
            pairs: long [P, 2] of (context end t < S, horizon 1 <= j <= h).
            grid_hw: (Hg, Wg) when Q is a spatial grid (level 1).
            z: [B, latent_dim] latent, added to every query token (None: z = 0).
            token_index: long [B, S, K], which of a step's Q positions each context token holds
                (a context that kept only part of each step, ``LevelConfig.context_keep``); None:
                all Q in order. Queries are still made for all Q positions; a query at a position
                its context step t did not keep starts without the anchor there.
            actions: [B, S_a, A] step action vectors (``ActionEncoder``), covering every target
                step (S_a > max t+j); None: no action term (also for a predictor built with one).

        Returns:
            [B, P, Q, D]: the prediction for step t+j of every pair.
        """
        b, s, k, _ = context.shape
        if token_index is not None and grid_hw is None:
            raise ValueError("token_index needs grid_hw: only level 1's spatial tokens can be left out")
        q = k if token_index is None else grid_hw[0] * grid_hw[1]
        p = pairs.shape[0]
        # Steps after the last context end are never visible: drop them.
        s = int(pairs[:, 0].max()) + 1
        context = context[:, :s]
        tok_pos = self._token_pos(q, grid_hw, context)  # [Q, pd]
        tgt_step = pairs[:, 0] + pairs[:, 1]  # [P]
        ctx_steps = torch.arange(s, device=context.device)

        emb = self.embed(context)  # [B, S, K, pd]
        if token_index is None:
            x = emb + tok_pos[None]
            anchor = emb
        else:
            token_index = token_index[:, :s]
            x = emb + tok_pos[token_index]
            # The present token of each kept position, zero where step t kept none.
            anchor = emb.new_zeros(b, s, q, self.dim).scatter(2, token_index[..., None].expand_as(emb), emb)
        qry = self.query_token + self.horizon_embed[pairs[:, 1] - 1][:, None, :] + tok_pos[None]  # [P, Q, pd]
        rope = None
        if self.rope_time:
            token_steps = torch.cat([ctx_steps.repeat_interleave(k), tgt_step.repeat_interleave(q)])  # [S*K + P*Q]
            rope = rope_time_tables(token_steps, self.head_dim)
        else:
            time_pos = sincos_1d(self.dim, torch.arange(s + self.horizon, device=context.device)).to(context)
            x = x + time_pos[:s, None, :]
            qry = qry + time_pos[tgt_step][:, None, :]
        x = x.reshape(b, s * k, self.dim)
        qry = qry.reshape(1, p * q, self.dim).expand(b, -1, -1)
        if self.anchor:  # start each query from its slot's present token (context step t)
            qry = qry + anchor[:, pairs[:, 0]].reshape(b, p * q, self.dim)
        if z is not None and self.z_embed is not None:
            qry = qry + self.z_embed(z)[:, None, :]
        if actions is not None:
            if self.action_proj is None:
                raise ValueError("this predictor takes no actions (its level has actions.num_classes = actions.dim = 0)")
            act = self._action_term(actions, pairs)  # [B, P, pd]
            qry = qry + act[:, :, None, :].expand(-1, -1, q, -1).reshape(b, p * q, self.dim)

        x = torch.cat([x, qry], dim=1)  # [B, S*K + P*Q, pd]
        # Block by block (hjepa.models.step_attention) where that skips work: the cost is then
        # linear in the clip length; the dense mask otherwise (short clips, unbounded windows).
        pattern = future_pattern(s, k, pairs, self.context_window, group_tokens=q)
        mask = pattern if pattern.pays() else pattern.dense_mask()
        for blk in self.blocks:
            x = blk(x, attn_mask=mask, rope=rope)
        out = self.head(self.norm(x[:, s * k :]))  # [B, P*Q, D]
        return out.reshape(b, p, q, self.in_dim)


class MaskedPredictor(nn.Module):
    """V-JEPA's masked predictor for level 1: visible tokens + mask tokens -> masked targets.

    Args:
        in_dim: D, the encoder width.
        cfg: predictor width / depth / heads.
    """

    def __init__(self, in_dim: int, cfg: PredictorConfig) -> None:
        super().__init__()
        pd = cfg.embed_dim
        self.in_dim, self.dim = in_dim, pd
        self.embed = nn.Linear(in_dim, pd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pd))
        dpr = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(Block(pd, cfg.num_heads, drop_path=d) for d in dpr)
        self.norm = nn.LayerNorm(pd, eps=1e-6)
        self.head = nn.Linear(pd, in_dim)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.apply(_init_linear)

    def no_weight_decay(self) -> set[str]:
        return {"mask_token"}

    def forward(
        self,
        context: torch.Tensor,
        grid: tuple[int, int, int],
        masks_enc: torch.Tensor,
        masks_pred: torch.Tensor,
    ) -> torch.Tensor:
        """Args:
            context: [B, Ke, D] encoder tokens at the ``masks_enc`` indices.
            grid: (Tg, Hg, Wg) of the window.
            masks_enc: long [B, Ke] visible token indices; masks_pred: long [B, Kp] targets.

        Returns:
            [B, Kp, D] predictions at the ``masks_pred`` indices.
        """
        pos = sincos_3d(self.dim, grid).to(context)  # [N, pd]
        x = self.embed(context) + pos[masks_enc]
        m = self.mask_token + pos[masks_pred]  # [B, Kp, pd]
        x = torch.cat([x, m], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x[:, context.shape[1] :]))


def _init_linear(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
