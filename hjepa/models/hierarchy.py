"""The H-JEPA: a stack of JEPA levels over video, each at a coarser timescale.

Level 1 encodes windows of pixels with a video ViT; level k+1 encodes level k's step
tokens pooled ``r_k`` steps at a time; every level predicts its own future ``h_k`` steps
ahead in representation space. Step times are tracked in frames of the model's input clip;
``step_seconds`` turns them into seconds at the frame rate the model was trained at (its
``input_settings``, which ``hjepa.load_pretrained`` reads from the file).

    model = HJEPA(HJEPAConfig())
    out = model(clip)                      # clip: [B, C, T, H, W], normalised
    out.loss.backward(); model.update_targets(momentum)
    encodings = model.encode(clip)         # per level: tokens + the frames each step covers
    predictions = model.predict(clip)      # per level: predictions for horizons 1..h_k
    ahead = model.rollout(clip, 3.0, level=1)   # level 2 rolled 3 s past the clip's end
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from hjepa.input_settings import InputSettings
from hjepa.models.config import HJEPAConfig
from hjepa.models.level import JEPALevel, LevelOutput, future_pairs
from hjepa.models.rollout import rollout
from hjepa.models.temporal import TemporalEncoder
from hjepa.models.vit import build_encoder
from hjepa.models.window import WindowEncoder


@dataclass
class HJEPAOutput:
    """Total loss plus every level's output (``levels[k].stats`` holds its logged scalars)."""

    loss: torch.Tensor
    levels: list[LevelOutput] = field(default_factory=list)

    def log_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Flat ``{prefix}level{k}/{stat}`` scalars for a logger."""
        out = {f"{prefix}loss": self.loss.detach()}
        for k, lv in enumerate(self.levels, start=1):
            out.update({f"{prefix}level{k}/{name}": v for name, v in lv.stats.items()})
        return out


@dataclass
class LevelEncoding:
    """One level's representation of a clip.

    Attributes:
        context: [B, S, Q, D] context-encoder step tokens.
        target: [B, S, Q, D] layer-normed target-encoder step tokens (the space predictions live in).
        step_frames: clip frames one step spans.
        start_frames, end_frames: long [S], first and last clip frame (inclusive) of each step.
    """

    context: torch.Tensor
    target: torch.Tensor
    step_frames: int
    start_frames: torch.Tensor
    end_frames: torch.Tensor


@dataclass
class LevelPrediction:
    """One level's predictions from every context end t for horizons 1..h.

    Attributes:
        pred: [B, S, h, Q, D] prediction of step t+j from context steps <= t.
        target: [B, S, h, Q, D] the true layer-normed target of step t+j (zeros where not in the clip).
        present: [B, S, Q, D] target of step t itself (the copy-the-present baseline).
        valid: bool [S, h], True where step t+j lies inside the clip.
        step_frames: clip frames one step spans.
        context_end_frames: long [S], last clip frame the context of step t has seen.
        target_end_frames: long [S, h], last clip frame of the predicted step t+j.
    """

    pred: torch.Tensor
    target: torch.Tensor
    present: torch.Tensor
    valid: torch.Tensor
    step_frames: int
    context_end_frames: torch.Tensor
    target_end_frames: torch.Tensor

    @property
    def horizon_frames(self) -> torch.Tensor:
        """long [h]: how far ahead, in clip frames, each horizon looks."""
        h = self.pred.shape[2]
        return torch.arange(1, h + 1) * self.step_frames


@dataclass
class LevelRollout:
    """One level rolled out past the end of a clip.

    Attributes:
        pred: [B, n, Q, D] predicted layer-normed targets of the n steps after the clip's last.
        step_seconds: seconds one step spans.
        horizon_s: float64 [n], how far past the clip's end each predicted step ends.
    """

    pred: torch.Tensor
    step_seconds: float
    horizon_s: torch.Tensor


class HJEPA(nn.Module):
    """Hierarchical JEPA built from an ``HJEPAConfig`` (see ``hjepa.models.config``)."""

    def __init__(self, config: HJEPAConfig) -> None:
        super().__init__()
        self.config = config
        enc = config.encoder
        overrides = {k: getattr(enc, k) for k in ("embed_dim", "depth", "num_heads") if getattr(enc, k) is not None}
        vit = build_encoder(
            enc.name,
            patch_size=enc.patch_size,
            tubelet_size=enc.tubelet_size,
            pos_embed=enc.pos_embed,
            temporal_attention=enc.temporal_attention,
            drop_path_rate=enc.drop_path_rate,
            grad_checkpointing=enc.grad_checkpointing,
            **overrides,
        )
        common = dict(
            loss_kind=config.loss,
            vicreg_var_weight=config.vicreg_var_weight,
            vicreg_cov_weight=config.vicreg_cov_weight,
        )
        levels = [
            JEPALevel(
                WindowEncoder(vit, config.frames_per_window, enc.temporal_attention),
                config.levels[0],
                spatial_tokens=True,
                frozen=enc.frozen,
                slots=config.window_slots(0),
                step_frames=config.step_frames(0),
                **common,
            )
        ]
        for k, lv in enumerate(config.levels[1:], start=1):
            encoder = TemporalEncoder(
                in_dim=levels[-1].embed_dim,
                dim=lv.embed_dim,
                depth=lv.depth,
                num_heads=lv.num_heads,
                stride=lv.stride,
                num_queries=lv.num_queries,
                pooling=lv.pooling,
                context_window=lv.context_window,
                time_encoding=lv.time_encoding,
            )
            levels.append(JEPALevel(encoder, lv, slots=config.window_slots(k), step_frames=config.step_frames(k),
                                    **common))
        self.levels = nn.ModuleList(levels)
        # The clips it was trained on (set by hjepa.load_pretrained from the file's record): the
        # one source of the frame rate behind step_seconds, and of every task's clip defaults.
        self.input_settings: InputSettings | None = None

    def load_level1_encoder(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Put pretrained weights (our-named, ``hjepa.models.pretrained.encoder_state_dict``) into
        level 1's ViT, strictly, and into its EMA target copy, which starts equal to it.

        The constructor never reads files (``hjepa.loading.build_model`` does, for
        ``encoder.pretrained``); this is where their tensors go.
        """
        from hjepa.models.pretrained import load_encoder_state_dict

        level = self.levels[0]
        load_encoder_state_dict(level.encoder.vit, state, source=source)
        if level.target_encoder is not None:
            level.target_encoder.load_state_dict(level.encoder.state_dict())

    # --- bookkeeping ----------------------------------------------------------------------

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def step_frames(self, level: int) -> int:
        """Clip frames one step of ``level`` (0-based) spans."""
        return self.config.step_frames(level)

    def step_seconds(self, level: int) -> float:
        """Seconds one step of ``level`` (0-based) spans, at the frame rate the model was trained at.

        Raises:
            ValueError: the model carries no frame rate (built from a config, or loaded from a
                file that records no source rate).
        """
        fps = self.input_settings.fps if self.input_settings is not None else None
        if fps is None:
            raise ValueError("this model records no training frame rate (input_settings.fps); load it with "
                             "hjepa.load_pretrained from a checkpoint that records one, or set model.input_settings")
        return self.step_frames(level) / fps

    def window_slots(self, level: int) -> int:
        """Steps of ``level`` (0-based) one level-1 window holds; step s sits in slot s % this."""
        return self.config.window_slots(level)

    def trainable_parts(self, level: int) -> list[nn.Module]:
        """The parts of ``level`` (0-based) that fine-tuning may train: its context encoder and
        predictor (none when the level is frozen). The EMA target encoder is never among them:
        it defines the space the predictions live in."""
        lv = self.levels[level]
        if lv.frozen:
            return []
        return [m for m in (lv.encoder, lv.predictor) if m is not None]

    def no_weight_decay(self) -> set[str]:
        """Parameter names that get no weight decay: position / query / mask tokens."""
        names: set[str] = set()
        for k, lv in enumerate(self.levels):
            for mod_name in ("encoder", "predictor", "masked_predictor"):
                mod = getattr(lv, mod_name, None)
                fn = getattr(mod, "no_weight_decay", None)
                if fn is not None:
                    names |= {f"levels.{k}.{mod_name}.{n}" for n in fn()}
        return names

    def patch_grid(self, clip_shape: torch.Size | tuple[int, ...]) -> tuple[int, int]:
        """(Hg, Wg): level 1's patch grid for a clip of shape ``[B, C, T, H, W]``."""
        _, hg, wg = self.levels[0].encoder.grid(clip_shape)
        return hg, wg

    def tubelet_grid(self, clip_shape: torch.Size | tuple[int, ...]) -> tuple[int, int, int]:
        """(Tg, Hg, Wg): level 1's tubelets per window in time and space (what masks are drawn on)."""
        return tuple(self.levels[0].encoder.grid(clip_shape))

    def _grid_hw(self, clip: torch.Tensor) -> tuple[int, int]:
        return self.patch_grid(clip.shape)

    def _check_clip(self, clip: torch.Tensor) -> None:
        if clip.ndim != 5:
            raise ValueError(f"clip must be [B, C, T, H, W], got shape {tuple(clip.shape)}")
        need = self.config.min_frames()
        if clip.shape[2] < need:
            raise ValueError(
                f"clip has {clip.shape[2]} frames; this model needs at least {need} "
                f"(every level needs horizon + 1 steps; step frames per level: "
                f"{[self.step_frames(k) for k in range(self.num_levels)]})"
            )

    def _check_actions(self, clip: torch.Tensor, actions: torch.Tensor | None, at_least: bool = False) -> None:
        """Actions belong to an action-conditioned level 1, one per clip frame (or more: ``at_least``)."""
        if actions is None:
            return
        if self.levels[0].action_encoder is None:
            raise ValueError("this model's level 1 takes no actions (levels[0].actions is off)")
        t, n = clip.shape[2], actions.shape[1] if actions.ndim >= 2 else -1
        if actions.shape[0] != clip.shape[0] or (n < t if at_least else n != t):
            raise ValueError(f"actions of shape {tuple(actions.shape)} for a clip of {clip.shape[0]} x {t} frames: "
                             f"need one per frame{' (or more, for the future)' if at_least else ''}")

    def _next_input(self, out_context: torch.Tensor, out_target: torch.Tensor) -> torch.Tensor:
        if self.config.level_input == "target":
            return out_target.detach()
        return out_context

    # --- training -------------------------------------------------------------------------

    def forward(
        self,
        clip: torch.Tensor,
        masks_enc: torch.Tensor | None = None,
        masks_pred: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
    ) -> HJEPAOutput:
        """Losses of every level on a clip.

        Args:
            clip: [B, C, T, H, W] normalised video, T a multiple of ``frames_per_window``.
            masks_enc, masks_pred: long [B, K] token indices into one window's grid for
                level 1's masked objective (used when ``levels[0].masked_weight > 0``).
            actions: the clip's per-frame actions, long [B, T] ids or float [B, T, A]
                (``hjepa.models.actions``), for an action-conditioned level 1 (required there); a
                higher level with ``actions.macro_dim`` reads them as macro-actions.

        Returns:
            ``HJEPAOutput``: ``loss`` = sum_k w_k * loss_k, and per-level outputs/statistics.
        """
        self._check_clip(clip)
        self._check_actions(clip, actions)
        masked = None
        if masks_enc is not None and masks_pred is not None:
            grid = self.levels[0].encoder.grid(clip.shape)
            masked = (masks_enc, masks_pred, grid)
        x: torch.Tensor = clip
        outputs: list[LevelOutput] = []
        total = clip.new_zeros(())
        for k, level in enumerate(self.levels):
            out = level(x, grid_hw=self._grid_hw(clip) if k == 0 else None, masked=masked if k == 0 else None,
                        actions=actions if level.action_encoder is not None else None)
            total = total + self.config.levels[k].loss_weight * out.loss
            outputs.append(out)
            x = self._next_input(out.context, out.target)
        return HJEPAOutput(loss=total, levels=outputs)

    @torch.no_grad()
    def update_targets(self, momentum: float) -> None:
        """EMA update of every level's target encoder."""
        for level in self.levels:
            level.update_target(momentum)

    # --- inference ------------------------------------------------------------------------

    def _times(self, level: int, num_steps: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        sf = self.step_frames(level)
        start = torch.arange(num_steps, device=device) * sf
        return start, start + sf - 1

    def encode(self, clip: torch.Tensor, grad: bool = False, num_levels: int | None = None) -> list[LevelEncoding]:
        """Every level's step tokens and the clip frames each step covers.

        Args:
            clip: [B, C, T, H, W] normalised video.
            grad: keep gradients through the context encoders (fine-tuning); the target encoders
                never carry them.
            num_levels: encode levels 1..num_levels only (default: all).
        """
        num_levels = self.num_levels if num_levels is None else num_levels
        x: torch.Tensor = clip
        out: list[LevelEncoding] = []
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            for k, level in enumerate(list(self.levels)[:num_levels]):
                context = level.encode_context(x)
                target = level.encode_target(x, context)
                start, end = self._times(k, context.shape[1], context.device)
                out.append(LevelEncoding(context, target, self.step_frames(k), start, end))
                x = self._next_input(context, target)
        return out

    def rollout_steps(
        self,
        context: torch.Tensor,
        level: int,
        end: int,
        steps: int,
        grid_hw: tuple[int, int] | None = None,
        actions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Roll ``level`` (0-based) out past its horizon, causally.

        Args:
            context: [B, S, Q, D] the level's real context tokens (``encode(clip)[level].context``).
            end: last context step the rollout may read.
            steps: how many steps past ``end`` to predict.
            grid_hw: level 1's patch grid (needed for level 0; ``patch_grid(clip.shape)``).
            actions: per-frame actions from the clip's first frame on, long [B, T'] / float
                [B, T', A], through frame ``(end + steps + 1) * F - 2`` at least (F: frames per
                step of ``level``): the actions chosen from the present state on are the rollout's
                input (a level above level 1 reads them as macro-actions).

        Returns:
            [B, steps, Q, D] predicted layer-normed targets of steps end+1..end+steps. They depend
            on each clip's own context steps <= ``end`` only (also through the map back into
            context space); gradients flow where enabled.
        """
        if level == 0 and grid_hw is None:
            raise ValueError("rolling out level 1 needs grid_hw (model.patch_grid(clip.shape))")
        step_actions = None if actions is None else self.levels[level].step_actions(actions)
        return rollout(self.levels[level], context, end, steps, grid_hw if level == 0 else None,
                       step_actions=step_actions)

    def rollout(self, clip: torch.Tensor, horizon_s: float, level: int = 0, grad: bool = False,
                encodings: list[LevelEncoding] | None = None) -> LevelRollout:
        """Roll ``level`` (0-based) out ``horizon_s`` seconds past the clip's last step.

        The steps are the fewest that reach ``horizon_s`` at the model's training frame rate
        (:meth:`step_seconds`); every prediction reads only the clip.

        Args:
            clip: [B, C, T, H, W] normalised video, sampled at the model's frame rate.
            horizon_s: seconds to look ahead (> 0).
            grad: keep gradients (fine-tuning through the rollout).
            encodings: ``self.encode(clip)`` when the caller already has it.
        """
        if not horizon_s > 0:
            raise ValueError(f"horizon_s={horizon_s}: must be > 0")
        if not 0 <= level < self.num_levels:
            raise ValueError(f"level={level}: the model has levels 0..{self.num_levels - 1}")
        seconds = self.step_seconds(level)
        steps = max(1, math.ceil(horizon_s / seconds - 1e-9))
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            if encodings is None:
                encodings = self.encode(clip, grad=grad, num_levels=level + 1)
            context = encodings[level].context
            pred = self.rollout_steps(context, level, context.shape[1] - 1, steps, self.patch_grid(clip.shape))
        return LevelRollout(pred, seconds, torch.arange(1, steps + 1, dtype=torch.float64) * seconds)

    def predict(
        self,
        clip: torch.Tensor,
        grad: bool = False,
        z: torch.Tensor | None = None,
        encodings: list[LevelEncoding] | None = None,
        actions: torch.Tensor | None = None,
    ) -> list[LevelPrediction]:
        """Every level's predictions from every context end t, for horizons 1..h_k.

        Args:
            clip: [B, C, T, H, W] normalised video.
            grad: keep gradients through the context encoders and predictors.
            z: [B, latent_dim] latent for levels that have one (None: z = 0, the mean draw).
            encodings: ``self.encode(clip)`` when the caller already has it (saves a second
                pass of every encoder).
            actions: per-frame actions for an action-conditioned level 1, one per clip frame or
                more (long [B, T'] / float [B, T', A]); predictions of steps they do not reach get
                no action term. None: no level-1 prediction has one (not how it was trained).
        """
        self._check_actions(clip, actions, at_least=True)
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return self._predict(clip, z, encodings, grad, actions)

    def _predict(self, clip: torch.Tensor, z: torch.Tensor | None, encodings: list[LevelEncoding] | None,
                 grad: bool, actions: torch.Tensor | None = None) -> list[LevelPrediction]:
        if encodings is None:
            encodings = self.encode(clip, grad=grad)
        elif len(encodings) != self.num_levels:
            raise ValueError(f"got encodings of {len(encodings)} levels for a {self.num_levels}-level model")
        grid_hw = self._grid_hw(clip)
        out: list[LevelPrediction] = []
        for k, (level, enc) in enumerate(zip(self.levels, encodings)):
            b, s, q, d = enc.target.shape
            h = self.config.levels[k].horizon
            pairs = future_pairs(s, h, only_valid=False, device=clip.device)  # [S*h, 2], t-major
            zk = z if (z is not None and self.config.levels[k].latent.dim > 0) else None
            step_actions = None
            if actions is not None and level.action_encoder is not None:
                step_actions = level.step_actions(actions)
                missing = s + h - step_actions.shape[1]  # steps past the clip the actions do not reach
                if missing > 0:
                    step_actions = torch.nn.functional.pad(step_actions, (0, 0, 0, missing))
            pred = level.predict_pairs(enc.context, pairs, grid_hw if k == 0 else None, z=zk,
                                       step_actions=step_actions)
            pred = pred.reshape(b, s, h, q, d)
            tgt_step = pairs.sum(1)
            valid = (tgt_step < s).reshape(s, h)
            target = enc.target.new_zeros(b, s * h, q, d)
            target[:, valid.reshape(-1)] = enc.target[:, tgt_step[valid.reshape(-1)]]
            sf = self.step_frames(k)
            out.append(
                LevelPrediction(
                    pred=pred,
                    target=target.reshape(b, s, h, q, d),
                    present=enc.target,
                    valid=valid,
                    step_frames=sf,
                    context_end_frames=enc.end_frames,
                    target_end_frames=((tgt_step + 1) * sf - 1).reshape(s, h),
                )
            )
        return out
