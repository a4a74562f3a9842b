"""Typed configuration of an anticipation run: the one source of defaults.

Every key has a default; YAML files (``configs/anticipate/*.yaml``) and command-line flags only
override. Values are checked on construction, so a bad one is refused at start with its key,
its value and the reason; :meth:`AnticipationConfig.from_dict` refuses unknown keys by name.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any, Literal, Optional, get_args, get_origin, get_type_hints

if TYPE_CHECKING:
    from hjepa.input_settings import InputSettings

log = logging.getLogger(__name__)



LossName = Literal["ce", "focal"]


def _check(cond: bool, key: str, value: Any, why: str) -> None:
    if not cond:
        raise ValueError(f"config key '{key}' = {value!r}: {why}")


@dataclass
class DataConfig:
    """Annotations and videos.

    Args:
        train, val: annotation CSVs (EPIC-100 / synthetic columns, RULSTM split, or generic
            ``video,start,stop,label``). Empty: the synthetic dataset is written to
            ``synthetic_dir`` (or ``<out_dir>/synthetic``) and its CSVs are used.
        format: ``auto`` (detect from the first row), ``epic``, ``rulstm`` or ``generic``.
        time_source: EPIC files: ``timestamp`` (start/stop timestamps; default) or ``frame``
            (frame columns divided by ``frame_fps`` or, if unset, the video's fps).
        frame_fps: fps the annotation frame columns count in (RULSTM: 30 when unset).
        video_info: CSV ``video_id,duration,fps`` (``EPIC_100_video_info.csv``); unset: each
            video's fps and length are read from the file's header.
        verb_classes, noun_classes: EPIC class files; set the head's verb/noun sizes (97/300).
        tail_verbs, tail_nouns, unseen_participants: the challenge's lists
            (``EPIC_100_tail_verbs.csv``, ``EPIC_100_tail_nouns.csv``,
            ``EPIC_100_unseen_participant_ids_validation.csv``); unset: derived from the
            annotations by the challenge's rule (``hjepa.anticipation.protocol``).
        video_dir: folder of the videos.
        video_pattern: path of a video under ``video_dir``; ``{video_id}`` and
            ``{participant_id}`` are filled in (EPIC: ``{participant_id}/videos/{video_id}.MP4``).
        reader: ``decord`` or ``pyav``.
        max_train, max_val: use only the first N segments of each split (quick runs).
        synthetic_dir: where the synthetic default dataset lives or is written (unset:
            ``<out_dir>/synthetic``); an existing ``hjepa synth`` folder is used as it is.
        synthetic_train_videos, synthetic_val_videos: videos the synthetic default writes.
        num_workers: video-decoding worker processes.
    """

    train: str = ""
    val: str = ""
    format: Literal["auto", "epic", "rulstm", "generic"] = "auto"
    time_source: Literal["timestamp", "frame"] = "timestamp"
    frame_fps: Optional[float] = None
    video_info: Optional[str] = None
    verb_classes: Optional[str] = None
    noun_classes: Optional[str] = None
    tail_verbs: Optional[str] = None
    tail_nouns: Optional[str] = None
    unseen_participants: Optional[str] = None
    video_dir: str = ""
    video_pattern: str = "{video_id}.mp4"
    reader: Literal["decord", "pyav"] = "decord"
    max_train: Optional[int] = None
    max_val: Optional[int] = None
    synthetic_dir: Optional[str] = None
    synthetic_train_videos: int = 256
    synthetic_val_videos: int = 64
    num_workers: int = 0

    def __post_init__(self) -> None:
        _check(bool(self.train) == bool(self.val), "data.train/data.val", (self.train, self.val),
               "give both annotation files, or neither for the synthetic default")
        _check(self.format in ("auto", "epic", "rulstm", "generic"), "data.format", self.format,
               "must be auto, epic, rulstm or generic")
        _check(self.time_source in ("timestamp", "frame"), "data.time_source", self.time_source,
               "must be timestamp or frame")
        _check(self.frame_fps is None or self.frame_fps > 0, "data.frame_fps", self.frame_fps, "must be > 0")
        _check("{video_id}" in self.video_pattern, "data.video_pattern", self.video_pattern,
               "must contain {video_id}")
        for key in ("max_train", "max_val"):
            v = getattr(self, key)
            _check(v is None or v >= 1, f"data.{key}", v, "must be >= 1")
        _check(self.synthetic_train_videos >= 1, "data.synthetic_train_videos", self.synthetic_train_videos,
               "must be >= 1")
        _check(self.synthetic_val_videos >= 1, "data.synthetic_val_videos", self.synthetic_val_videos, "must be >= 1")
        _check(self.num_workers >= 0, "data.num_workers", self.num_workers, "must be >= 0")


@dataclass
class WindowConfig:
    """Where the observed clip lies (see ``hjepa.anticipation.windows``).

    Args:
        tau_a: anticipation time in seconds: the clip ends this long before the action starts.
        tau_a_range: training only: draw tau_a uniformly from ``[low, high]`` per sample.
        tau_a_draws: frozen probe: cached training samples per action (each with its own draw).
        tau_o: observed seconds; the clip gets the nearest whole number of windows. Exclusive
            with ``num_windows``; both unset: the pretraining clip's ``num_windows`` when the
            checkpoint records it, else the model's shortest clip.
        num_windows: observed windows of ``frames_per_window`` frames.
        frame_step: sample every ``frame_step``-th frame of each video (at its own fps).
        sample_fps: or sample at this fixed rate (frames per second) in every video.
            Both unset: the pretraining run's ``target_fps`` / ``frame_step``, else ``frame_step = 1``.
        crop_size: frames are centre-cropped to a square and resized to this side (unset: the
            pretraining resolution, else 64).
    """

    tau_a: float = 1.0
    tau_a_range: Optional[tuple[float, float]] = None
    tau_a_draws: int = 1
    tau_o: Optional[float] = None
    num_windows: Optional[int] = None
    frame_step: Optional[int] = None
    sample_fps: Optional[float] = None
    crop_size: Optional[int] = None

    def __post_init__(self) -> None:
        _check(self.tau_a >= 0, "window.tau_a", self.tau_a, "must be >= 0 seconds")
        if self.tau_a_range is not None:
            self.tau_a_range = tuple(self.tau_a_range)  # type: ignore[assignment]
            lo, hi = self.tau_a_range
            _check(0 <= lo <= hi, "window.tau_a_range", self.tau_a_range, "must satisfy 0 <= low <= high")
        _check(self.tau_a_draws >= 1, "window.tau_a_draws", self.tau_a_draws, "must be >= 1")
        _check(self.tau_o is None or self.num_windows is None, "window.tau_o", self.tau_o,
               "give tau_o or num_windows, not both")
        _check(self.tau_o is None or self.tau_o > 0, "window.tau_o", self.tau_o, "must be > 0 seconds")
        _check(self.num_windows is None or self.num_windows >= 1, "window.num_windows", self.num_windows,
               "must be >= 1")
        _check(self.frame_step is None or self.sample_fps is None, "window.frame_step", self.frame_step,
               "give frame_step or sample_fps, not both")
        _check(self.frame_step is None or self.frame_step >= 1, "window.frame_step", self.frame_step, "must be >= 1")
        _check(self.sample_fps is None or self.sample_fps > 0, "window.sample_fps", self.sample_fps, "must be > 0")
        _check(self.crop_size is None or self.crop_size >= 8, "window.crop_size", self.crop_size, "must be >= 8 pixels")


@dataclass(frozen=True)
class HeadConfig:
    """Anticipation head architecture (see :class:`~hjepa.anticipation.head.AnticipationHead`)."""

    dim: int = 256
    depth: int = 1
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0


@dataclass(frozen=True)
class AnticipationOptimConfig:
    """Optimisation of the heads (and, when fine-tuning, of the backbone)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    loss: LossName = "ce"
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25


@dataclass
class AnticipationConfig:
    """An ``hjepa anticipate`` run.

    Args:
        ckpt: pretrained H-JEPA (``hjepa pretrain`` checkpoint or ``hjepa export`` folder).
        out_dir: run folder: ``summary.json``, ``head.pt``, ``predictions.json``, ``ablation.md``.
        mode: ``probe`` (backbone frozen; features computed once and cached) or ``finetune``
            (backbone trained with ``level_lrs``; ablation heads read detached features).
        level_lrs: fine-tuning learning rate of each level (level 1 first; 0 keeps a level
            frozen). Unset: ``0.1 * optim.lr`` for every level.
        levels: use levels 1..levels (unset: all).
        ablation: also train heads on level 1 only and on levels 1..k, with and without the
            predicted tokens, in the same run.
        cache_features: probe mode: keep features in ``<out_dir>/features_{split}.pt`` and
            reuse them when the run is repeated with the same data and window settings.
        feature_batch_size: clips per forward pass when extracting features.
        token_grid: average-pool level 1's spatial tokens to ``token_grid x token_grid``
            before the heads (unset: the full patch grid).
        context_steps: levels >= 2 give the heads their context tokens of their last
            ``context_steps`` steps (unset: every step of the observed clip, the context their
            predictors read); level 1 gives its last step.
        feature_dtype: dtype cached features are kept in (``float16`` halves the memory).
        device: ``auto`` (cuda if available), ``cpu``, ``cuda``, ``cuda:1``, ...
        cpu_threads: torch intra-op threads during the run (restored afterwards); unset: torch's
            default. On a busy shared CPU, 1 is often several times faster for these small ops.
        precision: ``32`` or ``bf16`` (autocast of the backbone on cuda).
        seed: everything random (tau_a draws, shuffling, initialisation).
        sls_pt, sls_tl, sls_td: supervision levels written into the challenge JSON (0..5).
        top_actions: action scores per segment in the challenge JSON (the challenge wants 100).
    """

    ckpt: str = ""
    out_dir: str = "runs/anticipate"
    mode: Literal["probe", "finetune"] = "probe"
    level_lrs: Optional[list[float]] = None
    levels: Optional[int] = None
    ablation: bool = True
    cache_features: bool = True
    feature_batch_size: int = 16
    token_grid: Optional[int] = None
    context_steps: Optional[int] = None
    feature_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    device: str = "auto"
    cpu_threads: Optional[int] = None
    precision: Literal["32", "bf16"] = "32"
    seed: int = 0
    sls_pt: int = 3
    sls_tl: int = 3
    sls_td: int = 3
    top_actions: int = 100
    data: DataConfig = field(default_factory=DataConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    optim: AnticipationOptimConfig = field(default_factory=AnticipationOptimConfig)

    def __post_init__(self) -> None:
        sections = (("data", DataConfig), ("window", WindowConfig), ("head", HeadConfig), ("optim", AnticipationOptimConfig))
        for name, cls in sections:
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _from_dict(cls, value, name))
        _check(self.mode in ("probe", "finetune"), "mode", self.mode, "must be probe or finetune")
        _check(self.levels is None or self.levels >= 1, "levels", self.levels, "must be >= 1")
        _check(self.level_lrs is None or all(lr >= 0 for lr in self.level_lrs), "level_lrs", self.level_lrs,
               "learning rates must be >= 0")
        _check(self.level_lrs is None or self.mode == "finetune", "level_lrs", self.level_lrs,
               "only used with mode=finetune")
        _check(self.token_grid is None or self.token_grid >= 1, "token_grid", self.token_grid, "must be >= 1")
        _check(self.context_steps is None or self.context_steps >= 1, "context_steps", self.context_steps,
               "must be >= 1")
        _check(self.feature_dtype in ("float32", "float16", "bfloat16"), "feature_dtype", self.feature_dtype,
               "must be float32, float16 or bfloat16")
        _check(self.feature_batch_size >= 1, "feature_batch_size", self.feature_batch_size, "must be >= 1")
        _check(self.cpu_threads is None or self.cpu_threads >= 1, "cpu_threads", self.cpu_threads, "must be >= 1")
        _check(str(self.precision) in ("32", "bf16"), "precision", self.precision, "must be '32' or 'bf16'")
        self.precision = str(self.precision)  # type: ignore[assignment]
        for key in ("sls_pt", "sls_tl", "sls_td"):
            _check(0 <= getattr(self, key) <= 5, key, getattr(self, key), "supervision levels are 0..5")
        _check(self.top_actions >= 1, "top_actions", self.top_actions, "must be >= 1")
        _check(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"), "device", self.device,
               "must be auto, cpu, cuda[:i] or mps")
        h, o = self.head, self.optim
        _check(h.dim % h.num_heads == 0, "head.dim", h.dim, f"must divide by head.num_heads={h.num_heads}")
        _check(h.depth >= 1, "head.depth", h.depth, "must be >= 1")
        _check(0 <= h.dropout < 1, "head.dropout", h.dropout, "must be in [0, 1)")
        _check(o.epochs >= 1, "optim.epochs", o.epochs, "must be >= 1")
        _check(o.batch_size >= 1, "optim.batch_size", o.batch_size, "must be >= 1")
        _check(o.lr > 0, "optim.lr", o.lr, "must be > 0")
        _check(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "must be >= 0")
        _check(o.loss in ("ce", "focal"), "optim.loss", o.loss, "must be ce or focal")
        _check(0 <= o.label_smoothing < 1, "optim.label_smoothing", o.label_smoothing, "must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AnticipationConfig":
        """Build from a nested dict (e.g. a YAML file); unknown keys are refused by name."""
        return _from_dict(cls, data, "anticipate")


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"config section '{where}' must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown config key(s) in '{where}': {', '.join(unknown)}; allowed: {', '.join(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if is_dataclass(hint) and isinstance(value, dict):
            value = _from_dict(hint, value, f"{where}.{key}")
        elif get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        elif get_origin(hint) is not None and type(None) in get_args(hint) and isinstance(value, list):
            inner = [a for a in get_args(hint) if a is not type(None)]
            if inner and get_origin(inner[0]) is tuple:
                value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def load_config(path: str, overrides: dict[str, Any] | None = None) -> AnticipationConfig:
    """Read a YAML file (optionally under a top-level ``anticipate:`` key) and apply overrides.

    ``overrides`` use dotted keys: ``{"window.tau_a": 0.5, "optim.epochs": 3}``.
    """
    import yaml

    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if set(data) == {"anticipate"}:
        data = data["anticipate"]
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return AnticipationConfig.from_dict(data)


def resolve_window(cfg: AnticipationConfig, trained: "InputSettings | None") -> AnticipationConfig:
    """Fill unset clip settings from the backbone's input record: the clips it knows are the
    default. Videos are sampled at the frame rate it saw (``trained.fps``), whatever their own."""
    w = cfg.window
    changes: dict[str, Any] = {}
    if trained is None:
        return cfg
    if w.num_windows is None and w.tau_o is None:
        changes["num_windows"] = trained.num_windows
    if w.frame_step is None and w.sample_fps is None:
        if trained.fps is not None:
            changes["sample_fps"] = trained.fps
        else:
            changes["frame_step"] = trained.step
    if w.crop_size is None:
        changes["crop_size"] = trained.resolution
    if not changes:
        return cfg
    log.info("clip settings from the pretraining run: %s", changes)
    return AnticipationConfig.from_dict({**cfg.to_dict(), "window": {**asdict(w), **changes}})
