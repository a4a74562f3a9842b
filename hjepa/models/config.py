"""Typed configuration of an H-JEPA model: the one source of defaults.

Every field has a default; YAML files and command-line flags only override. The
dataclasses validate themselves on construction, so a bad value is refused at start
with its key, its value and the reason. A checkpoint stores ``asdict(config)`` so the
model can be rebuilt from the file alone (``HJEPAConfig.from_dict``), and unknown keys
in that dict are refused by name.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Literal, Optional, get_args, get_origin, get_type_hints


def _check(cond: bool, key: str, value: Any, why: str) -> None:
    if not cond:
        raise ValueError(f"config key '{key}' = {value!r}: {why}")


@dataclass
class EncoderConfig:
    """Level 1's video ViT.

    Args:
        name: registry size (``micro``, ``tiny``, ``small``, ``base``, ``large``, ``huge``, ``giant``).
        patch_size: spatial patch side in pixels.
        tubelet_size: frames per tubelet; one level-1 step spans this many frames when
            ``temporal_attention`` is ``causal``.
        pos_embed: ``sincos`` (3-D sin-cos, added) or ``rope`` (3-D rotary, V-JEPA 2).
        temporal_attention: ``causal`` (block-causal over tubelet time slots; one step per
            time slot, exact causality) or ``full`` (bidirectional inside a window, as the
            released V-JEPA encoders; then one level-1 step is one window).
        drop_path_rate: stochastic depth rate.
        grad_checkpointing: recompute block activations in backward to save memory.
        embed_dim, depth, num_heads: override the registry's size.
        frozen: keep the encoder's weights fixed (a pretrained level 1); its target is
            then the encoder itself.
        pretrained: path of a V-JEPA / V-JEPA 2 / transformers checkpoint to load into it.
        pretrained_key: which entry of a V-JEPA checkpoint dict: ``target_encoder`` or ``encoder``.
    """

    name: str = "micro"
    patch_size: int = 16
    tubelet_size: int = 2
    pos_embed: Literal["sincos", "rope"] = "sincos"
    temporal_attention: Literal["causal", "full"] = "causal"
    drop_path_rate: float = 0.0
    grad_checkpointing: bool = False
    embed_dim: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    frozen: bool = False
    pretrained: Optional[str] = None
    pretrained_key: Literal["target_encoder", "encoder"] = "target_encoder"

    def __post_init__(self) -> None:
        _check(self.patch_size > 0, "encoder.patch_size", self.patch_size, "must be positive")
        _check(self.tubelet_size > 0, "encoder.tubelet_size", self.tubelet_size, "must be positive")
        _check(self.pos_embed in ("sincos", "rope"), "encoder.pos_embed", self.pos_embed, "must be sincos or rope")
        _check(
            self.temporal_attention in ("causal", "full"),
            "encoder.temporal_attention", self.temporal_attention, "must be causal or full",
        )
        _check(0.0 <= self.drop_path_rate < 1.0, "encoder.drop_path_rate", self.drop_path_rate, "must be in [0, 1)")


@dataclass
class PredictorConfig:
    """A narrow transformer that reads context tokens plus query tokens carrying target positions.

    Args:
        anchor_queries: the query for step t+j also carries the context token at step t of
            the same slot (future predictor only). The predictor then starts from the present
            and learns the change, instead of first having to learn where to look; without it,
            briefly trained predictors output the same mean target for every clip.
    """

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 12
    drop_path_rate: float = 0.0
    anchor_queries: bool = True

    def __post_init__(self) -> None:
        _check(self.embed_dim % self.num_heads == 0, "predictor.embed_dim", self.embed_dim,
               f"must divide by predictor.num_heads={self.num_heads}")
        _check(self.depth >= 1, "predictor.depth", self.depth, "must be >= 1")


@dataclass
class LatentConfig:
    """Optional latent variable z fed to the predictor.

    Training draws ``num_samples`` values of z per clip and keeps the one with the lowest
    loss (winner-takes-all). The information z can carry is limited by its dimension and by
    the choice among ``num_samples`` draws (at most log2(num_samples) bits per prediction);
    ``penalty`` adds ``penalty * ||z_best||^2`` so the predictor prefers small latents.
    ``dim = 0`` switches z off.
    """

    dim: int = 0
    num_samples: int = 4
    penalty: float = 0.0

    def __post_init__(self) -> None:
        _check(self.dim >= 0, "latent.dim", self.dim, "must be >= 0")
        _check(self.num_samples >= 1, "latent.num_samples", self.num_samples, "must be >= 1")


@dataclass
class ActionConfig:
    """Actions that condition a level's future predictor (both counts 0: an action-free level).

    Level 1 reads primitive actions, one per clip frame: the action of frame f is the one taken
    in the state frame f shows, the one that leads to frame f+1 (``frame_actions_*.csv`` of the
    BabyAI recipe). Each frame's action is embedded into ``embed_dim`` numbers; a level-1 step
    gets the embeddings of the actions that lead into its frames (``hjepa.models.actions``), and
    the query for step t+j those of steps t+1..t+j, so a prediction reads every action taken
    after its context's last frame up to its target's last, and none later.

    A level above level 1 reads the same per-frame actions through a *macro-action*: the
    embeddings of every action over its step are mapped to ``macro_dim`` numbers squashed into
    [-1, 1] (``tanh``), so a planner at that level searches a small box instead of sequences of
    primitive actions (``hjepa.planning.hierarchical``).

    Args:
        num_classes: discrete actions with ids ``0 .. num_classes - 1`` (minigrid: 7).
        dim: continuous actions of ``dim`` numbers each. At most one of the two is > 0.
        embed_dim: width of one frame's action embedding.
        macro_dim: levels >= 2: width of the macro-action (required there); 0 at level 1, whose
            predictor reads the embeddings themselves.
    """

    num_classes: int = 0
    dim: int = 0
    embed_dim: int = 16
    macro_dim: int = 0

    def __post_init__(self) -> None:
        _check(self.num_classes >= 0, "actions.num_classes", self.num_classes, "must be >= 0")
        _check(self.dim >= 0, "actions.dim", self.dim, "must be >= 0")
        _check(not (self.num_classes and self.dim), "actions", (self.num_classes, self.dim),
               "actions are discrete (num_classes) or continuous (dim), not both")
        _check(self.embed_dim >= 1, "actions.embed_dim", self.embed_dim, "must be >= 1")
        _check(self.macro_dim >= 0, "actions.macro_dim", self.macro_dim, "must be >= 0")

    @property
    def enabled(self) -> bool:
        return self.num_classes > 0 or self.dim > 0


@dataclass
class LevelConfig:
    """One JEPA level.

    For level 1 the encoder is ``HJEPAConfig.encoder`` and ``embed_dim``/``depth``/
    ``num_heads``/``stride``/``num_queries``/``pooling`` are unused. For level k >= 2:

    Args:
        stride: r_{k-1}, how many steps of the level below one step of this level pools.
        num_queries: Q, tokens per step after spatial pooling.
        pooling: ``attentive`` (Q learned queries cross-attend the r*Q' tokens) or ``mean``
            (average over the r steps, then over neighbouring tokens down to Q). Attentive pooling
            starts as an average over the whole step, space included, so a briefly trained level
            can keep nothing of where things are; mean pooling with Q = Q' keeps the layout.
        embed_dim, depth, num_heads: the temporal transformer (causal in time).
        horizon: h_k, how many of its own steps ahead the level predicts.
        loss_weight: w_k in the total loss.
        max_predictions: at most this many (context end, horizon) pairs per clip enter the
            loss in training (a random subset; None: all). Evaluation always uses all.
        masked_weight: level 1 only: weight of V-JEPA's masked spatio-temporal loss (0: off).
        vicreg_samples: what the VICReg terms (``HJEPAConfig.vicreg_*_weight``) count as one
            sample of this level's context: ``steps`` (a step's tokens averaged: B*S samples of
            D dimensions) or ``tokens`` (every token: B*S*Q samples). With ``steps`` the terms
            constrain only the average of a step's tokens, not each token.
        target: how the level encodes the future it predicts. ``ema``: a stop-gradient EMA copy
            of the context encoder (V-JEPA). ``shared``: the context encoder itself, with
            gradient through both branches, as in *A Path Towards Autonomous Machine
            Intelligence*: the encoder is then also trained to make the future predictable, so
            it drops what cannot be predicted; only the VICReg terms hold collapse off, so
            ``shared`` needs ``vicreg_var_weight > 0``, and it can predict well by encoding little
            (watch the effective rank).
        target_input: what the target encoder sees when it encodes step t+j. ``step``: that step
            alone (the paper's ``Enc(y)``: level 1 one tubelet slot, a higher level one step of
            the level below), so a target holds nothing of the context it is predicted from and
            nothing of where the step sits in its window. ``causal``: every step up to t+j, as the
            context encoder sees it (saved models from before the option): then the target of
            t+1 already contains step t, and part of it can be "predicted" from pixels that were
            never in the future; within a window it also carries the step's slot.
        time_encoding: how the level's future predictor and (levels >= 2) temporal encoder tell
            steps apart. ``rope``: a plain rotary angle per step in attention, so they see only
            offsets between steps (a query for step t+j and a context step s differ by t+j-s
            wherever the clip starts and however long it is). ``absolute``: sin-cos step indices
            added in the predictor and V-JEPA 2's 3-D rotary layout in the temporal encoder, whose
            paired channels turn at different rates and so keep a trace of the step index (saved
            models from before the option).
        context_keep: level 1 only: the fraction of each step's tokens its context encoder sees in
            training (a random subset per window and time slot, the same count in each; the rest
            are never encoded, as in V-JEPA's context). The future predictor reads the kept tokens
            with their positions and still predicts every token of every future step, from whole
            targets; evaluation, inference and the level above see every token. 1: all.
        actions: the actions its future predictor is conditioned on (``ActionConfig``; default:
            none, a video-only level): level 1 the primitive ones, a higher level a macro-action
            made of them (``macro_dim``).
        context_window: how many past steps (its own included) a token attends to in the level's
            future predictor and, for levels >= 2, its temporal encoder; None: all. Bounded, a
            clip longer than the training clips shows them no step offset they were not trained on.
    """

    embed_dim: int = 128
    depth: int = 2
    num_heads: int = 4
    stride: int = 4
    num_queries: int = 4
    pooling: Literal["attentive", "mean"] = "attentive"
    horizon: int = 2
    loss_weight: float = 1.0
    max_predictions: Optional[int] = None
    masked_weight: float = 0.0
    vicreg_samples: Literal["steps", "tokens"] = "steps"
    target: Literal["ema", "shared"] = "ema"
    target_input: Literal["step", "causal"] = "step"
    time_encoding: Literal["rope", "absolute"] = "rope"
    context_window: Optional[int] = 4
    context_keep: float = 1.0
    predictor: PredictorConfig = field(default_factory=lambda: PredictorConfig(embed_dim=128, depth=2, num_heads=4))
    latent: LatentConfig = field(default_factory=LatentConfig)
    actions: ActionConfig = field(default_factory=ActionConfig)

    def __post_init__(self) -> None:
        _check(self.stride >= 1, "level.stride", self.stride, "must be >= 1")
        _check(self.num_queries >= 1, "level.num_queries", self.num_queries, "must be >= 1")
        _check(self.pooling in ("attentive", "mean"), "level.pooling", self.pooling, "must be attentive or mean")
        _check(self.horizon >= 1, "level.horizon", self.horizon, "must be >= 1")
        _check(self.loss_weight >= 0, "level.loss_weight", self.loss_weight, "must be >= 0")
        _check(self.vicreg_samples in ("steps", "tokens"), "level.vicreg_samples", self.vicreg_samples,
               "must be steps or tokens")
        _check(self.target in ("ema", "shared"), "level.target", self.target, "must be ema or shared")
        _check(self.target_input in ("step", "causal"), "level.target_input", self.target_input,
               "must be step or causal")
        _check(self.time_encoding in ("rope", "absolute"), "level.time_encoding", self.time_encoding,
               "must be rope or absolute")
        for name, width, heads in (("predictor", self.predictor.embed_dim, self.predictor.num_heads),
                                   ("level", self.embed_dim, self.num_heads)):
            _check(self.time_encoding != "rope" or (width // heads) % 2 == 0, "level.time_encoding",
                   self.time_encoding, f"rope needs an even {name} head size, got {width // heads}")
        _check(0.0 < self.context_keep <= 1.0, "level.context_keep", self.context_keep, "must be in (0, 1]")
        _check(self.context_window is None or self.context_window >= 1, "level.context_window",
               self.context_window, "must be >= 1 or null")
        _check(self.embed_dim % self.num_heads == 0, "level.embed_dim", self.embed_dim,
               f"must divide by level.num_heads={self.num_heads}")


@dataclass
class HJEPAConfig:
    """A whole H-JEPA.

    Args:
        frames_per_window: frames one level-1 encoder pass sees; a clip of T frames is
            T / frames_per_window windows, encoded as one batch.
        encoder: level 1's video ViT.
        levels: one entry per level, level 1 first.
        loss: regression loss on layer-normed targets: ``l1`` (default), ``smooth_l1`` or ``mse``.
        vicreg_var_weight, vicreg_cov_weight: VICReg variance / covariance terms on each
            level's context embeddings (0: off, the EMA target alone). On by default: with the
            EMA target alone, a level above level 1 can collapse to a constant.
        level_input: what level k+1 consumes: ``target`` (level k's EMA target encoder,
            stop-gradient, stable) or ``context`` (level k's context encoder, end to end).
        ema_start, ema_end: EMA momentum ramps linearly from start to end over training.
    """

    frames_per_window: int = 8
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    levels: list[LevelConfig] = field(
        default_factory=lambda: [
            LevelConfig(horizon=2, max_predictions=16, predictor=PredictorConfig(embed_dim=64, depth=2, num_heads=4)),
            LevelConfig(stride=4, horizon=2),
        ]
    )
    loss: Literal["l1", "smooth_l1", "mse"] = "l1"
    vicreg_var_weight: float = 1.0
    vicreg_cov_weight: float = 0.04
    level_input: Literal["target", "context"] = "target"
    ema_start: float = 0.998
    ema_end: float = 1.0

    def __post_init__(self) -> None:
        # jsonargparse / from_dict may hand us plain dicts for nested sections.
        if isinstance(self.encoder, dict):
            self.encoder = _from_dict(EncoderConfig, self.encoder, "encoder")
        self.levels = [
            _from_dict(LevelConfig, lv, f"levels[{i}]") if isinstance(lv, dict) else lv
            for i, lv in enumerate(self.levels)
        ]
        _check(len(self.levels) >= 1, "levels", self.levels, "need at least one level")
        _check(self.frames_per_window % self.encoder.tubelet_size == 0, "frames_per_window",
               self.frames_per_window, f"must divide by encoder.tubelet_size={self.encoder.tubelet_size}")
        _check(self.loss in ("l1", "smooth_l1", "mse"), "loss", self.loss, "must be l1, smooth_l1 or mse")
        _check(self.level_input in ("target", "context"), "level_input", self.level_input,
               "must be target or context")
        _check(0.0 <= self.ema_start <= self.ema_end <= 1.0, "ema_start", (self.ema_start, self.ema_end),
               "need 0 <= ema_start <= ema_end <= 1")
        for i, lv in enumerate(self.levels):
            _check(lv.target != "shared" or self.vicreg_var_weight > 0, f"levels[{i}].target", lv.target,
                   "a shared target needs vicreg_var_weight > 0 (nothing else prevents collapse)")
        for i, lv in enumerate(self.levels[1:], start=1):
            _check(lv.context_keep == 1.0, f"levels[{i}].context_keep", lv.context_keep,
                   "only level 1 (spatial tokens) can leave context tokens out")
            if lv.actions.enabled:
                first = self.levels[0].actions
                _check(lv.actions.macro_dim > 0, f"levels[{i}].actions.macro_dim", lv.actions.macro_dim,
                       "a level above level 1 reads actions as a macro-action: set macro_dim > 0")
                _check((lv.actions.num_classes, lv.actions.dim) == (first.num_classes, first.dim),
                       f"levels[{i}].actions", lv.actions, "must read the same actions as level 1 "
                       f"(num_classes={first.num_classes}, dim={first.dim})")
        _check(self.levels[0].actions.macro_dim == 0, "levels[0].actions.macro_dim", self.levels[0].actions.macro_dim,
               "level 1 reads its actions themselves: 0")
        keep = self.levels[0].context_keep
        if keep < 1.0:
            _check(not self.encoder.frozen, "levels[0].context_keep", keep,
                   "a frozen encoder trains nothing: leaving its tokens out saves no gradient")
            _check(self.level_input == "target" or len(self.levels) == 1, "levels[0].context_keep", keep,
                   "level_input=context would hand level 2 the partial context; use level_input=target")
        if self.levels[0].masked_weight > 0:
            _check(self.encoder.temporal_attention in ("causal", "full"), "levels[0].masked_weight",
                   self.levels[0].masked_weight, "needs a ViT level 1")

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def level1_step_frames(self) -> int:
        """Frames one level-1 step spans: a tubelet (causal) or a whole window (full)."""
        if self.encoder.temporal_attention == "causal":
            return self.encoder.tubelet_size
        return self.frames_per_window

    def step_frames(self, level: int) -> int:
        """Frames one step of ``level`` (0-based) spans: r_1 * ... * r_k level-1 steps."""
        frames = self.level1_step_frames()
        for lv in self.levels[1 : level + 1]:
            frames *= lv.stride
        return frames

    def window_slots(self, level: int) -> int:
        """Steps of ``level`` (0-based) that one level-1 window holds (1 when a step spans a window
        or more). Clips start at a window boundary, so step s sits in slot ``s % window_slots``."""
        return max(self.frames_per_window // self.step_frames(level), 1)

    def min_frames(self) -> int:
        """Shortest clip that gives every level at least ``horizon + 1`` steps."""
        need = 0
        for k, lv in enumerate(self.levels):
            need = max(need, (lv.horizon + 1) * self.step_frames(k))
        window = self.frames_per_window
        return -(-need // window) * window

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HJEPAConfig":
        """Rebuild from ``to_dict()`` output; unknown keys are refused by name.

        A saved config without a later option was trained before the option existed and is
        rebuilt as it was trained: no anchored queries, absolute predictor times, unbounded
        context, targets that see the causal context.
        """
        data = copy.deepcopy(data)
        for level in data.get("levels") or []:
            if not isinstance(level, dict):
                continue
            for key, old in _LEVEL_BEFORE_OPTION.items():
                level.setdefault(key, old)
            pred = level.get("predictor")
            if isinstance(pred, dict):
                for key, old in _PREDICTOR_BEFORE_OPTION.items():
                    pred.setdefault(key, old)
        return _from_dict(cls, data, "model")


# What a saved config that lacks a key meant, for keys added after configs were first saved.
_LEVEL_BEFORE_OPTION = {"target_input": "causal", "time_encoding": "absolute", "context_window": None}
_PREDICTOR_BEFORE_OPTION = {"anchor_queries": False}


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"config section '{where}' must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config key(s) in '{where}': {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        if is_dataclass(hint) and isinstance(value, dict):
            value = _from_dict(hint, value, f"{where}.{key}")
        elif get_origin(hint) is list and isinstance(value, list):
            (item,) = get_args(hint)
            if is_dataclass(item):
                value = [_from_dict(item, v, f"{where}.{key}[{i}]") if isinstance(v, dict) else v
                         for i, v in enumerate(value)]
        kwargs[key] = value
    return cls(**kwargs)
