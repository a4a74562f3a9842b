"""One JEPA level: context encoder, EMA target encoder, future predictor, loss and statistics.

The level reads its input (pixels for level 1, the level below's step tokens otherwise),
encodes it into step tokens ``[B, S, Q, D]`` with the context encoder and, without
gradient, with the EMA target encoder. The predictor then predicts ``layer_norm(target)``
at steps t+1..t+h from context steps <= t, for every (t, j) pair the clip allows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from hjepa.losses import (
    RunningRows,
    baseline_skill,
    copy_ratio,
    covariance_loss,
    feature_std,
    gather_across_ranks,
    normalize_target,
    regression_loss,
    variance_loss,
)
from hjepa.models.actions import ActionEncoder
from hjepa.models.config import LevelConfig
from hjepa.models.predictor import FuturePredictor, MaskedPredictor


def future_pairs(num_steps: int, horizon: int, only_valid: bool = True, device: torch.device | None = None) -> torch.Tensor:
    """All (context end t, horizon j) pairs, long [P, 2], ordered by t then j.

    ``only_valid`` keeps the pairs whose target step t+j lies inside the clip (training);
    otherwise every t in 0..S-1 with every j in 1..h (inference: predictions past the end).
    """
    t = torch.arange(num_steps, device=device).repeat_interleave(horizon)
    j = torch.arange(1, horizon + 1, device=device).repeat(num_steps)
    pairs = torch.stack([t, j], dim=1)
    if only_valid:
        pairs = pairs[pairs.sum(1) < num_steps]
    return pairs


@dataclass
class LevelOutput:
    """What a level's forward pass returns.

    Attributes:
        loss: scalar, this level's weighted-sum-ready loss (prediction + optional terms).
        context: [B, S, Q, D] context-encoder step tokens (with gradient); in training with
            ``context_keep`` < 1 only the K kept tokens of each step, [B, S, K, D].
        target: [B, S, Q, D] layer-normed target-encoder step tokens (no gradient).
        stats: detached scalars to log (``loss``, ``pred_loss``, ``std``, ``eff_rank``, ``copy_ratio``, ...).
    """

    loss: torch.Tensor
    context: torch.Tensor
    target: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class JEPALevel(nn.Module):
    """Args:
        encoder: maps the level's input to step tokens [B, S, Q, D] (``embed_dim`` attribute).
        cfg: the level's config (horizon, predictor, latent, max_predictions, masked_weight).
        loss_kind: ``l1``, ``smooth_l1`` or ``mse``.
        spatial_tokens: True for level 1, whose Q tokens are a spatial grid.
        frozen: the encoder is fixed (pretrained level 1): no EMA copy, target = context.
        vicreg_var_weight, vicreg_cov_weight: VICReg terms on context embeddings (per step or
            per token: ``cfg.vicreg_samples``).
        slots: how many of this level's steps one level-1 window holds (1 when a step spans a
            window or more); step s sits in slot ``s % slots``. The logged ``skill`` compares
            predictions with baselines that know the slot.
        step_frames: frames one step spans (level 1: what ``cfg.actions`` are grouped by).

    The target encoder (and a frozen encoder) always runs in eval mode, whatever ``train()`` is
    set to: stochastic depth or dropout there would make targets, and the level above, random.
    """

    def __init__(
        self,
        encoder: nn.Module,
        cfg: LevelConfig,
        loss_kind: str = "l1",
        spatial_tokens: bool = False,
        frozen: bool = False,
        vicreg_var_weight: float = 0.0,
        vicreg_cov_weight: float = 0.0,
        slots: int = 1,
        step_frames: int = 1,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.slots = slots
        self.loss_kind = loss_kind
        self.spatial_tokens = spatial_tokens
        self.frozen = frozen
        self.vicreg = (vicreg_var_weight, vicreg_cov_weight)
        self.encoder = encoder
        self.embed_dim = encoder.embed_dim
        # The target is the encoder itself when frozen (no gradient) or shared (gradient).
        self.shared_target = cfg.target == "shared" and not frozen
        if frozen:
            self.encoder.requires_grad_(False)
            self.target_encoder = None
        elif self.shared_target:
            self.target_encoder = None
        else:
            self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.action_encoder = ActionEncoder(cfg.actions, step_frames) if cfg.actions.enabled else None
        self.predictor = FuturePredictor(
            self.embed_dim,
            cfg.predictor,
            cfg.horizon,
            num_tokens=None if spatial_tokens else cfg.num_queries,
            latent_dim=cfg.latent.dim,
            context_window=cfg.context_window,
            time_encoding=cfg.time_encoding,
            action_dim=0 if self.action_encoder is None else self.action_encoder.out_dim,
        )
        self.masked_predictor = (
            MaskedPredictor(self.embed_dim, cfg.predictor) if spatial_tokens and cfg.masked_weight > 0 else None
        )
        # Step embeddings of recent training batches for the logged effective rank: one batch
        # has fewer rows than dimensions at higher levels.
        self.rank_rows = RunningRows(4 * self.embed_dim, self.embed_dim)
        self.train()

    def train(self, mode: bool = True) -> "JEPALevel":
        super().train(mode)
        if self.target_encoder is not None:
            self.target_encoder.eval()
        if self.frozen:
            self.encoder.eval()
        return self

    # --- encoders -----------------------------------------------------------------------

    def encode_context(self, x: torch.Tensor) -> torch.Tensor:
        """x: level input -> [B, S, Q, D] context step tokens."""
        if self.frozen:
            with torch.no_grad():
                return self.encoder(x)
        return self.encoder(x)

    def _target_raw(self, encoder: nn.Module, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        # A full-attention level 1 has one step per window: its steps already see only themselves.
        per_step = self.cfg.target_input == "step" and getattr(encoder, "temporal_attention", "causal") == "causal"
        if per_step:
            return encoder.encode_steps(x)
        return context if context is not None else encoder(x)

    @torch.no_grad()
    def encode_target(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x: level input -> [B, S, Q, D] layer-normed target step tokens (stop-gradient).

        ``context``: this input's context tokens, reused as the raw target when the target
        encoder is the encoder itself and sees the causal context (saves a pass)."""
        if self.target_encoder is None:
            raw = self._target_raw(self.encoder, x, None if context is None else context.detach())
        else:
            raw = self._target_raw(self.target_encoder, x, None)
        return normalize_target(raw)

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """EMA: target <- momentum * target + (1 - momentum) * context, parameter by parameter."""
        if self.target_encoder is None:
            return
        tgt = [p for p in self.target_encoder.parameters()]
        src = [p.detach() for p in self.encoder.parameters()]
        torch._foreach_mul_(tgt, momentum)
        torch._foreach_add_(tgt, src, alpha=1.0 - momentum)

    # --- prediction -----------------------------------------------------------------------

    def step_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Per-frame actions (long [B, T] / float [B, T, A]) -> [B, S, A_step] step vectors, one per
        step the frames reach: ``S = (T + 1) // F`` with F the level's step in frames, and step s
        reads the actions of frames sF - 1 .. sF + F - 2."""
        if self.action_encoder is None:
            raise ValueError("this level takes no actions (actions.num_classes = actions.dim = 0 in its config)")
        return self.action_encoder(actions)

    def predict_pairs(
        self,
        context: torch.Tensor,
        pairs: torch.Tensor,
        grid_hw: tuple[int, int] | None,
        z: torch.Tensor | None = None,
        token_index: torch.Tensor | None = None,
        step_actions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[B, S, Q, D] context -> [B, P, Q, D] predicted layer-normed targets for ``pairs``.

        ``token_index``: long [B, S, K] when the context holds only K of each step's Q tokens
        (training with ``context_keep`` < 1): which positions they are. ``step_actions``:
        [B, S_a, A_step] from :meth:`step_actions`, covering every target step (None: none)."""
        return self.predictor(context, pairs, grid_hw=grid_hw if self.spatial_tokens else None, z=z,
                              token_index=token_index, actions=step_actions)

    def _latent_wta(
        self, context: torch.Tensor, pairs: torch.Tensor, target: torch.Tensor, grid_hw: tuple[int, int] | None,
        token_index: torch.Tensor | None = None,
        step_actions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Winner-takes-all over K latent draws: returns (loss, best prediction [B, P, Q, D])."""
        lat = self.cfg.latent
        b = context.shape[0]
        z = torch.randn(lat.num_samples * b, lat.dim, device=context.device, dtype=context.dtype)
        ctx = context.repeat(lat.num_samples, 1, 1, 1)
        index = None if token_index is None else token_index.repeat(lat.num_samples, 1, 1)
        acts = None if step_actions is None else step_actions.repeat(lat.num_samples, 1, 1)
        pred = self.predict_pairs(ctx, pairs, grid_hw, z=z, token_index=index, step_actions=acts)  # [K*B, P, Q, D]
        per = regression_loss(pred, target.repeat(lat.num_samples, 1, 1, 1), self.loss_kind, reduce_dims=1)
        per = per.reshape(lat.num_samples, b)
        best = per.argmin(dim=0)  # [B]
        loss = per.gather(0, best[None]).mean()
        if lat.penalty > 0:
            z_best = z.reshape(lat.num_samples, b, -1)[best, torch.arange(b)]
            loss = loss + lat.penalty * z_best.square().sum(-1).mean()
        pred_best = pred.reshape(lat.num_samples, b, *pred.shape[1:])[best, torch.arange(b)]
        return loss, pred_best

    def forward(
        self,
        x: torch.Tensor,
        grid_hw: tuple[int, int] | None = None,
        masked: tuple | None = None,
        actions: torch.Tensor | None = None,
    ) -> LevelOutput:
        """Encode, predict every valid (t, j) pair, and compute the loss.

        Args:
            x: the level's input (level 1: clip [B, C, T, H, W]; else [B, S', Q', D']).
            grid_hw: (Hg, Wg) of level 1's spatial tokens.
            masked: level 1's masked objective inputs ``(masks_enc, masks_pred, window grid)``,
                masks as long [B, K] (shared by a clip's windows) or [B*n, K], or lists of
                such tensors (one per block family, e.g. short- and long-range; their losses
                are averaged); used only when ``masked_weight > 0``.
            actions: the clip's per-frame actions (long [B, T] / float [B, T, A]) for a level
                with ``cfg.actions``; required in training there, refused elsewhere.
        """
        step_actions = None
        if actions is not None:
            step_actions = self.step_actions(actions)
        elif self.action_encoder is not None and self.training:
            raise ValueError("this level is action-conditioned (its config sets actions): training needs "
                             "the clip's per-frame actions")
        token_index = None
        if self.training and self.spatial_tokens and self.cfg.context_keep < 1:
            # The future objective's context sees part of each step (V-JEPA's context sees 10-25 %
            # of a clip): the encoder's cost with gradient shrinks with it; targets stay whole.
            count = max(1, round(self.cfg.context_keep * grid_hw[0] * grid_hw[1]))
            kept = self.encoder.draw_kept(x.shape, count, x.device)
            context, token_index = self.encoder.encode_kept(x, kept)  # [B, S, K, D], [B, S, K]
        else:
            context = self.encode_context(x)
        whole = None if token_index is not None else context  # a partial context is no target
        # A shared target keeps its gradient: the encoder learns to make its future predictable.
        if self.shared_target:
            target = normalize_target(self._target_raw(self.encoder, x, whole))
        else:
            target = self.encode_target(x, whole)
        s = target.shape[1]
        if s < 2:
            raise ValueError(f"level has {s} step(s) in this clip; it needs at least 2 to predict: use a longer clip")
        pairs = future_pairs(s, self.cfg.horizon, device=context.device)
        if self.training and self.cfg.max_predictions and pairs.shape[0] > self.cfg.max_predictions:
            keep = torch.randperm(pairs.shape[0], device=pairs.device)[: self.cfg.max_predictions]
            pairs = pairs[keep.sort().values]
        future = target[:, pairs.sum(1)]  # [B, P, Q, D]
        if self.training and self.cfg.latent.dim > 0:
            pred_loss, pred = self._latent_wta(context, pairs, future, grid_hw, token_index, step_actions)
        else:
            pred = self.predict_pairs(context, pairs, grid_hw, token_index=token_index, step_actions=step_actions)
            pred_loss = regression_loss(pred, future, self.loss_kind)
        loss = pred_loss
        stats: dict[str, torch.Tensor] = {"pred_loss": pred_loss.detach()}

        if self.masked_predictor is not None and masked is not None:
            enc_sets, pred_sets, grid = masked
            if isinstance(enc_sets, torch.Tensor):
                enc_sets, pred_sets = [enc_sets], [pred_sets]
            m_loss = torch.stack(
                [self._masked_loss(x, target, me, mp, grid) for me, mp in zip(enc_sets, pred_sets)]
            ).mean()
            loss = loss + self.cfg.masked_weight * m_loss
            stats["masked_loss"] = m_loss.detach()

        var_w, cov_w = self.vicreg
        if (var_w > 0 or cov_w > 0) and not self.frozen:
            if self.cfg.vicreg_samples == "tokens":
                emb = context.reshape(-1, context.shape[-1])  # [B*S*Q, D]
            else:
                emb = context.mean(dim=2).reshape(-1, context.shape[-1])  # [B*S, D]
            emb = gather_across_ranks(emb)  # batch statistics over every rank's clips
            v, c = variance_loss(emb), covariance_loss(emb)
            loss = loss + var_w * v + cov_w * c
            stats["vicreg_var"], stats["vicreg_cov"] = v.detach(), c.detach()

        stats["loss"] = loss.detach()
        stats["std"] = feature_std(context)
        target = target.detach()  # what the next level reads, and the statistics, take no gradient
        future = future.detach()
        stats["target_std"] = feature_std(target)
        rows = target.mean(dim=2).reshape(-1, target.shape[-1])  # [B*S, D] step embeddings
        if self.training:
            stats["eff_rank"] = self.rank_rows.add(gather_across_ranks(rows))  # every rank's clips
        else:
            stats["eff_rank"] = RunningRows.rank_of(rows)
        stats["copy_ratio"] = copy_ratio(pred, future, target[:, pairs[:, 0]])
        stats["skill"] = baseline_skill(pred, target, pairs, self.slots)
        return LevelOutput(loss=loss, context=context, target=target, stats=stats)

    def _masked_loss(
        self,
        clip: torch.Tensor,
        target_steps: torch.Tensor,
        masks_enc: torch.Tensor,
        masks_pred: torch.Tensor,
        grid: tuple[int, int, int],
    ) -> torch.Tensor:
        """V-JEPA's masked loss on every window: predict masked target tokens from visible ones."""
        enc = self.encoder  # WindowEncoder
        windows = enc.windows(clip)  # [B*n, C, F, H, W]
        n = windows.shape[0] // clip.shape[0]
        if masks_enc.shape[0] != windows.shape[0]:  # one mask per clip: every window shares it
            masks_enc = masks_enc.repeat_interleave(n, dim=0)
            masks_pred = masks_pred.repeat_interleave(n, dim=0)
        visible = enc.vit(windows, masks=masks_enc)  # [B*n, Ke, D]
        with torch.no_grad():
            if enc.temporal_attention == "causal":
                # Causal steps are the window tokens themselves: reuse, do not re-encode.
                full = target_steps.reshape(windows.shape[0], -1, target_steps.shape[-1])  # [B*n, N, D]
            else:
                vit = enc.vit if self.target_encoder is None else self.target_encoder.vit
                full = normalize_target(vit(windows))  # [B*n, N, D]
            tgt = torch.gather(full, 1, masks_pred[..., None].expand(-1, -1, full.shape[-1]))
        pred = self.masked_predictor(visible, grid, masks_enc, masks_pred)
        return regression_loss(pred, tgt, self.loss_kind)
