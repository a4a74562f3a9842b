"""Anticipation features from an H-JEPA: context at the observation end, predictions at the action start.

For an observed clip ending ``tau_a`` seconds before an action, every level k gives two token sets:

* ``ctx{k}``: what the level knows at the end of observation. Level 1: ``[B, Q_1, D_1]``, the
  context encoder's tokens of the clip's last level-1 step (its window holds the last
  ``frames_per_window`` frames). Level k >= 2: ``[B, n*Q_k, D_k]``, the tokens of its last ``n``
  steps (``context_steps``; default every step of the clip), which is the context its own
  predictor reads. A higher level's steps are few and each stands for a stretch of the past, so
  the observed history lives in them: on the tests' tiny backbone the head on levels 1-2
  reached top-1 0.70 with level 2's three observed steps and 0.58 with its last step alone,
  against 0.60 for level 1 (``tests/test_anticipation_e2e.py``'s data, 25-epoch heads);
* ``pred{k}``: ``[B, Q_k, D_k]``, the level's prediction of the step in which the action
  starts, ``n_k = ceil(tau_a / step_k)`` of its own steps ahead (``step_k`` = seconds one
  level-k step spans). When ``n_k`` exceeds the level's horizon ``h_k`` the predictor is
  rolled forward: its predictions for the next ``h_k`` steps are appended to the context and
  it predicts again from there, until step ``n_k`` is reached.

The rollout is ``HJEPA.rollout_steps``, the one ``hjepa evaluate`` scores.

The functions take ``grad`` so fine-tuning can run the same code with gradients.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import torch
from torch import Tensor, nn

from hjepa.anticipation.windows import WindowPlan, anticipation_steps

if TYPE_CHECKING:
    from hjepa.anticipation.config import AnticipationConfig
    from hjepa.anticipation.data import PreparedData

log = logging.getLogger(__name__)


@dataclass
class FeatureSet:
    """Cached features of N actions.

    ``tokens[name]``: ``[N, Q, D]`` token set (``ctx{k}``: level k's context tokens at the
    observation end, for k >= 2 those of its observed steps; ``pred{k}``: level k's predicted
    tokens at the action start);
    ``targets[output]``: ``[N]`` class indices (-1 where the action is not in the vocabulary);
    ``uids``: segment id of each row (repeated when several ``tau_a`` were drawn).
    """

    tokens: dict[str, Tensor]
    targets: dict[str, Tensor]
    uids: list[str]
    tau_a: Tensor = field(default_factory=lambda: torch.zeros(0))

    def __len__(self) -> int:
        return len(self.uids)

    def subset(self, index: Tensor) -> "FeatureSet":
        rows = index.tolist()
        return FeatureSet(
            {k: v[index] for k, v in self.tokens.items()},
            {k: v[index] for k, v in self.targets.items()},
            [self.uids[i] for i in rows],
            self.tau_a[index] if len(self.tau_a) else self.tau_a,
        )

    def labelled(self) -> Tensor:
        """Indices of rows whose action is in the vocabulary."""
        first = next(iter(self.targets.values()))
        return (first >= 0).nonzero().flatten()

    @staticmethod
    def cat(parts: Sequence["FeatureSet"]) -> "FeatureSet":
        return FeatureSet(
            {k: torch.cat([p.tokens[k] for p in parts]) for k in parts[0].tokens},
            {k: torch.cat([p.targets[k] for p in parts]) for k in parts[0].targets},
            [u for p in parts for u in p.uids],
            torch.cat([p.tau_a for p in parts]),
        )


def level_step_seconds(model, level: int, sample_fps: float) -> float:
    """Seconds one step of ``level`` (0-based) spans when clip frames are ``1 / sample_fps`` apart."""
    return model.step_frames(level) / sample_fps


def clip_frames(model, num_levels: int, num_windows: int | None = None, tau_o: float | None = None,
                sample_fps: float | None = None) -> int:
    """Frames ``T`` of the observed clip.

    ``T`` is a whole number of windows and of top-level steps, so the last step of every level
    ends exactly at the observation end. ``num_windows`` fixes it; ``tau_o`` (seconds, with
    ``sample_fps``) takes the nearest valid length; neither: the shortest valid clip that gives
    every level the ``horizon + 1`` steps it was pretrained with (``config.min_frames()``).
    """
    fpw = model.config.frames_per_window
    unit = math.lcm(fpw, model.step_frames(num_levels - 1))
    if num_windows is not None:
        t = num_windows * fpw
        if t % unit:
            raise ValueError(
                f"num_windows={num_windows} gives {t} frames; every level's last step must end at the clip end, "
                f"so the clip needs a multiple of {unit} frames ({unit // fpw} windows)"
            )
        return t
    if tau_o is not None:
        if sample_fps is None:
            raise ValueError("tau_o needs the sampling rate to turn seconds into frames")
        return unit * max(1, round(tau_o * sample_fps / unit))
    return unit * max(1, math.ceil(model.config.min_frames() / unit))


def clip_features(
    model,
    clip: Tensor,
    tau_a: Sequence[float],
    sample_fps: Sequence[float],
    num_levels: int,
    grad: bool = False,
    token_grid: int | None = None,
    context_steps: int | None = None,
) -> dict[str, Tensor]:
    """Token sets of a batch of observed clips.

    Args:
        model: an ``HJEPA``.
        clip: ``[B, C, T, H, W]`` normalised clips, each ending at its observation end.
        tau_a: seconds from each clip's end to its action's start, ``[B]``.
        sample_fps: each clip's frame rate (frames per second of the clip), ``[B]``.
        num_levels: levels 1..num_levels are used.
        grad: keep gradients (fine-tuning).
        token_grid: average-pool level 1's spatial tokens to ``token_grid x token_grid``
            (None: keep the ``Hg x Wg`` grid); the heads then read fewer tokens, and cached
            features take less memory.
        context_steps: levels >= 2 give the tokens of their last ``context_steps`` steps
            (None: all of the clip's steps).

    Returns:
        ``{"ctx1": [B, Q_1, D_1], "ctx2": [B, n_2*Q_2, D_2], ..., "pred1": [B, Q_1, D_1],
        "pred2": [B, Q_2, D_2], ...}``.
    """
    b = clip.shape[0]
    if len(tau_a) != b or len(sample_fps) != b:
        raise ValueError(f"{len(tau_a)} tau_a and {len(sample_fps)} rates for a batch of {b}")
    grid = model.patch_grid(clip.shape)
    contexts = [e.context for e in model.encode(clip, grad=grad, num_levels=num_levels)]
    out: dict[str, Tensor] = {}
    rows = torch.arange(b, device=clip.device)
    with torch.set_grad_enabled(grad):
        for k, context in enumerate(contexts):
            if k == 0:
                out["ctx1"] = context[:, -1]
            else:
                n = context.shape[1] if context_steps is None else min(context_steps, context.shape[1])
                out[f"ctx{k + 1}"] = context[:, -n:].flatten(1, 2)
            steps = [anticipation_steps(t, level_step_seconds(model, k, r)) for t, r in zip(tau_a, sample_fps)]
            last = context.shape[1] - 1
            preds = model.rollout_steps(context, k, last, max(steps), grid)  # [B, n_max, Q, D]
            out[f"pred{k + 1}"] = preds[rows, torch.tensor(steps, device=clip.device) - 1]
    if token_grid is not None:
        for key in ("ctx1", "pred1"):
            out[key] = pool_grid(out[key], grid, token_grid)
    return out


def pool_grid(tokens: Tensor, grid_hw: tuple[int, int], size: int) -> Tensor:
    """``[B, Hg*Wg, D]`` spatial tokens -> ``[B, h*w, D]`` with ``h, w = min(size, Hg), min(size, Wg)``."""
    b, n, d = tokens.shape
    hg, wg = grid_hw
    if n != hg * wg:
        raise ValueError(f"{n} tokens do not form the {hg}x{wg} grid")
    h, w = min(size, hg), min(size, wg)
    if (h, w) == (hg, wg):
        return tokens
    x = tokens.transpose(1, 2).reshape(b, d, hg, wg)
    return torch.nn.functional.adaptive_avg_pool2d(x, (h, w)).flatten(2).transpose(1, 2)


@torch.no_grad()
def feature_shapes(model, num_frames: int, crop_size: int, num_levels: int, token_grid: int | None = None,
                   context_steps: int | None = None) -> dict[str, tuple[int, int]]:
    """``(tokens, width)`` of every token set ``clip_features`` returns, from one blank clip."""
    p = next(model.parameters())
    clip = torch.zeros(1, 3, num_frames, crop_size, crop_size, device=p.device, dtype=p.dtype)
    feats = clip_features(model, clip, [0.0], [1.0], num_levels, token_grid=token_grid, context_steps=context_steps)
    return {k: (int(v.shape[1]), int(v.shape[2])) for k, v in feats.items()}


# --- the features of a split: extraction and cache -----------------------------------------


@dataclass
class SplitFeatures:
    """The features of one split and how they were made.

    ``failed``: ``"path: reason"`` of every clip whose video failed to decode (skipped);
    ``cached``: whether they were read from the cache file (None: no cache was consulted).
    """

    features: FeatureSet
    failed: list[str] = field(default_factory=list)
    cached: Optional[bool] = None


def autocast(device: torch.device, precision: str):
    enabled = precision == "bf16" and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def model_input(clip_uint8: Tensor, device: torch.device) -> Tensor:
    from hjepa.data.transforms import to_model_input

    return to_model_input(clip_uint8.to(device, non_blocking=True))


def extract_features(model: nn.Module, ds: "PreparedData", plan: WindowPlan, num_levels: int, device: torch.device,
                     cfg: "AnticipationConfig", split: str) -> SplitFeatures:
    """Features of every planned clip (no gradient); clips whose video fails are skipped and listed."""
    loader = ds.loader(plan, False, cfg.feature_batch_size)
    parts: dict[str, list[Tensor]] = {}
    rows: list[int] = []
    errors: list[str] = []
    with torch.no_grad(), autocast(device, cfg.precision):
        for batch in loader:
            errors += batch["errors"]
            if batch["clip"] is None:
                continue
            idx = batch["index"].tolist()
            items = [plan.items[i] for i in idx]
            feats = clip_features(model, model_input(batch["clip"], device),
                                  [w.tau_a for _, w in items], [ds.rate(ds.video_info[s.video_id]) for s, _ in items],
                                  num_levels, token_grid=cfg.token_grid, context_steps=cfg.context_steps)
            for k, v in feats.items():
                parts.setdefault(k, []).append(v.to(getattr(torch, cfg.feature_dtype)).cpu())
            rows += idx
    if errors:
        for e in sorted(set(errors))[:20]:
            log.warning("skipped clip: %s", e)
    if not rows:
        raise ValueError(f"no {split} clip could be decoded ({len(errors)} failed, e.g. {errors[:3]})")
    segs = [plan.items[i][0] for i in rows]
    feats = FeatureSet(
        {k: torch.cat(v) for k, v in parts.items()},
        ds.targets(segs),
        [s.uid for s in segs],
        torch.tensor([plan.items[i][1].tau_a for i in rows]),
    )
    return SplitFeatures(feats, errors)


def _cache_key(cfg: "AnticipationConfig", split: str, plan: WindowPlan, num_levels: int, model: nn.Module) -> str:
    h = hashlib.sha256()
    if cfg.ckpt and Path(cfg.ckpt).exists():
        st = Path(cfg.ckpt).stat()
        h.update(f"{Path(cfg.ckpt).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    else:
        h.update(state_hash(model).encode())
    h.update(json.dumps([split, num_levels, cfg.window.crop_size, cfg.data.reader, cfg.token_grid,
                         cfg.context_steps, cfg.feature_dtype]).encode())
    for seg, w in plan.items:
        h.update(f"{seg.uid}|{seg.video_id}|{w.frames}|{w.tau_a:.6f}".encode())
    return h.hexdigest()


def cached_features(cfg: "AnticipationConfig", out: Path, split: str, model: nn.Module, ds: "PreparedData",
                    plan: WindowPlan, num_levels: int, device: torch.device) -> SplitFeatures:
    """:func:`extract_features` with a cache file that is reused only when its key matches exactly."""
    path = out / f"features_{split}.pt"
    key = _cache_key(cfg, split, plan, num_levels, model)
    if cfg.cache_features and path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("key") == key:
            log.info("reusing cached %s features from %s", split, path)
            return SplitFeatures(FeatureSet(saved["tokens"], saved["targets"], saved["uids"], saved["tau_a"]),
                                 cached=True)
    made = extract_features(model, ds, plan, num_levels, device, cfg, split)
    feats = made.features
    if cfg.cache_features:
        torch.save({"key": key, "tokens": feats.tokens, "targets": feats.targets, "uids": feats.uids,
                    "tau_a": feats.tau_a}, path)
    made.cached = False
    return made


def state_hash(model: nn.Module) -> str:
    """SHA-256 of every tensor of ``model``'s state: a frozen backbone must keep it."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
