"""``run_anticipation``: probe or fine-tune a pretrained H-JEPA for action anticipation.

The run composes one module per role (``config`` -> ``data`` -> ``features`` -> ``head_training`` /
``finetune`` -> ``report``), step by step:

1. load the H-JEPA (``hjepa.load_pretrained``) and the annotations (``data.prepare_data``); the
   action classes are the
   (verb, noun) pairs (or labels) of the training split; the unseen-participant and tail-class
   lists are read from the official files or derived from the annotations (``protocol``);
2. place every action's observed clip (``windows.plan_windows``): it ends ``tau_a`` seconds
   before the action starts, in the video's own frames; clamped and unobservable actions are
   counted;
3. features (``features.clip_features``): every level's context tokens at the observation end
   (level 1: its last step; higher levels: their observed steps, ``context_steps``) and every
   level's predicted tokens at the action start. ``probe``: the backbone is frozen,
   features are computed once (and cached); ``finetune``: the backbone trains with per-level
   learning rates under the main head;
4. heads (``head_training.ablation_specs``): the main head reads every level's context and
   predictions; with ``ablation`` the heads on level 1 only and on levels 1..k, with and
   without predictions, train in the same run on the same data;
5. metrics on **every** validation segment, as the challenge scores them
   (``report.evaluate_heads``, ``protocol.SplitEvaluation``): an action unseen in training is a miss in the action
   metrics, a segment with nothing observable (or no readable video) gets the training prior;
   overall, unseen-participant and tail-class recall@5; the head checkpoint, the challenge
   JSON (every narration id), an ablation table and ``summary.json``.
"""

from __future__ import annotations

import logging
import random
import statistics
import time
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from torch import nn

from hjepa.anticipation.config import (
    AnticipationConfig,
    AnticipationOptimConfig,
    DataConfig,
    HeadConfig,
    WindowConfig,
    resolve_window,
)
from hjepa.anticipation.data import prepare_data
from hjepa.anticipation.features import cached_features, clip_frames, extract_features, feature_shapes, state_hash
from hjepa.anticipation.finetune import finetune
from hjepa.anticipation.head_training import ablation_specs, build_heads, load_head, main_head_name, train_on_features
from hjepa.anticipation.report import evaluate_heads, failed_clip_counts, write_artefacts, write_summary
from hjepa.anticipation.windows import draw_tau_a

__all__ = ["load_head", "prepare_data", "run", "run_anticipation"]

log = logging.getLogger(__name__)


def run_anticipation(
    ckpt: str = "",
    out_dir: str = "runs/anticipate",
    mode: Literal["probe", "finetune"] = "probe",
    level_lrs: Optional[list[float]] = None,
    levels: Optional[int] = None,
    ablation: bool = True,
    cache_features: bool = True,
    feature_batch_size: int = 16,
    token_grid: Optional[int] = None,
    context_steps: Optional[int] = None,
    feature_dtype: Literal["float32", "float16", "bfloat16"] = "float32",
    device: str = "auto",
    cpu_threads: Optional[int] = None,
    precision: Literal["32", "bf16"] = "32",
    seed: int = 0,
    sls_pt: int = 3,
    sls_tl: int = 3,
    sls_td: int = 3,
    top_actions: int = 100,
    data: DataConfig = DataConfig(),
    window: WindowConfig = WindowConfig(),
    head: HeadConfig = HeadConfig(),
    optim: AnticipationOptimConfig = AnticipationOptimConfig(),
) -> dict[str, Any]:
    """Probe or fine-tune a pretrained H-JEPA for action anticipation (EPIC-KITCHENS-100 protocol).

    Args:
        ckpt: pretrained H-JEPA: an ``hjepa pretrain`` checkpoint (``.ckpt``) or ``hjepa export`` folder.
        out_dir: run folder for ``summary.json``, ``head.pt``, ``predictions.json``, ``ablation.md``.
        mode: ``probe`` (backbone frozen, features computed once and cached) or ``finetune``
            (backbone trained under the main head with ``level_lrs``).
        level_lrs: fine-tuning learning rate per level (level 1 first; 0 = frozen). Unset:
            ``0.1 * optim.lr`` for every level.
        levels: use levels 1..levels of the model (unset: all).
        ablation: also train the heads on level 1 only and on levels 1..k, each with and
            without predicted tokens, in the same run.
        cache_features: probe mode: save features under ``out_dir`` and reuse them when the
            same data, model and window settings come again.
        feature_batch_size: clips per backbone forward pass.
        token_grid: average-pool level 1's spatial tokens to ``token_grid x token_grid``
            before the heads (unset: the full patch grid; EPIC at 224 px: 14 x 14).
        context_steps: levels >= 2 give the heads their context tokens of their last
            ``context_steps`` steps (unset: every step of the observed clip); level 1 gives its last step.
        feature_dtype: dtype of the cached features (``float16`` halves their memory).
        device: ``auto`` (cuda when available), ``cpu``, ``cuda``, ``cuda:1``, ...
        cpu_threads: torch intra-op threads during the run, restored afterwards (unset: torch's
            default; on a busy shared CPU 1 thread is often several times faster here).
        precision: ``32`` or ``bf16`` (backbone autocast on cuda).
        seed: seed of the tau_a draws, shuffling and head initialisation.
        sls_pt: supervision level, pretraining (0..5), written into the challenge JSON.
        sls_tl: supervision level, training labels (0..5).
        sls_td: supervision level, training data (0..5).
        top_actions: action scores written per segment in the challenge JSON (the challenge: 100).
        data: annotations and videos (see ``DataConfig``).
        window: observed-clip placement and sampling (see ``WindowConfig``).
        head: anticipation-head architecture (``dim``, ``depth``, ``num_heads``, ``mlp_ratio``, ``dropout``).
        optim: head optimisation (``epochs``, ``batch_size``, ``lr``, ``weight_decay``,
            ``warmup_epochs``, ``loss`` = ``ce`` | ``focal``, ``label_smoothing``,
            ``focal_gamma``, ``focal_alpha``).

    Returns:
        The summary, also written to ``<out_dir>/summary.json``. Flat keys:

        * ``{verb,noun,action}_recall5`` class-mean top-5 recall of the main head over every
          validation segment (the EK-100 anticipation metric; the same as ``…_recall5/overall``),
          ``{output}_recall5/unseen`` (participants absent from training) and
          ``{output}_recall5/tail`` (tail classes; actions: tail verb or tail noun), each left
          out when its subset is empty; ``{output}_top1`` / ``{output}_top5`` accuracies;
          ``chance_{output}_recall5``; ``prior_{output}_recall5[/subset]`` (training frequencies);
        * ``ablation/<head>/<output>_<metric>`` for every head (``L1``, ``L1+pred``, ``L1-2``,
          ..., the main head last), ``train_loss/<head>``;
        * counts: ``train_segments``, ``val_segments``, ``val_evaluated`` (every validation
          segment), ``val_scored_by_head``, ``val_prior_fallback`` (segments without features,
          scored by the prior), ``val_unseen_action_segments`` / ``val_unseen_actions`` (pairs
          never seen in training: action misses), ``val_unseen_participants`` (list),
          ``val_unseen_participant_segments``, ``tail_verbs`` / ``tail_nouns`` (or
          ``tail_actions``), ``protocol_lists`` (file or ``derived`` per list),
          ``{train,val}_dropped_unobservable``, ``{train,val}_clamped``,
          ``dropped_no_video``, ``skipped_videos``, ``skipped_files`` (list), ``{split}_failed_clips``
          (when a video failed to decode), ``train_samples``, ``{split}_features_cached``;
        * sizes: ``num_levels``, ``num_verbs``, ``num_nouns``, ``num_actions``, ``clip_frames``, ``crop_size``,
          ``sample_fps`` (median over videos), ``observed_seconds``, ``tau_a``;
        * times: ``wall_time_s``, ``feature_time_s``, ``train_time_s``;
        * artefacts: ``head_checkpoint``, ``predictions_json``, ``ablation_table``, ``main_head``.
    """
    cfg = AnticipationConfig(
        ckpt=ckpt, out_dir=out_dir, mode=mode, level_lrs=level_lrs, levels=levels, ablation=ablation,
        cache_features=cache_features, feature_batch_size=feature_batch_size, token_grid=token_grid,
        context_steps=context_steps, feature_dtype=feature_dtype, device=device, cpu_threads=cpu_threads,
        precision=precision, seed=seed, sls_pt=sls_pt, sls_tl=sls_tl, sls_td=sls_td, top_actions=top_actions,
        data=data, window=window, head=head, optim=optim,
    )
    return run(cfg)


def run(cfg: AnticipationConfig, model: nn.Module | None = None) -> dict[str, Any]:
    """Run from a validated config (``model``: an already loaded H-JEPA instead of ``cfg.ckpt``)."""
    threads = torch.get_num_threads()
    if cfg.cpu_threads is not None:
        torch.set_num_threads(cfg.cpu_threads)
    try:
        return _run(cfg, model)
    finally:
        torch.set_num_threads(threads)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _run(cfg: AnticipationConfig, model: nn.Module | None) -> dict[str, Any]:
    t_start = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    device = resolve_device(cfg.device)
    if model is None:
        if not cfg.ckpt:
            raise ValueError(
                "config key 'ckpt' is empty: give a pretrained H-JEPA (hjepa pretrain writes "
                "<run_dir>/checkpoints/last.ckpt; hjepa export writes a folder)"
            )
        from hjepa.loading import load_pretrained

        model = load_pretrained(cfg.ckpt)
    # The clips the backbone was pretrained on (its input record, read by load_pretrained) are the
    # defaults here, and its synthetic world makes the synthetic data.
    trained = getattr(model, "input_settings", None)
    model = model.to(device).eval()
    num_levels = cfg.levels or model.num_levels
    if num_levels > model.num_levels:
        raise ValueError(f"config key 'levels' = {cfg.levels}: the model has {model.num_levels} levels")
    if cfg.level_lrs is not None and len(cfg.level_lrs) != num_levels:
        raise ValueError(f"config key 'level_lrs' has {len(cfg.level_lrs)} entries for {num_levels} levels")
    cfg = resolve_window(cfg, trained)

    # --- data ---
    ds = prepare_data(cfg, out, world=trained.synthetic if trained is not None else None)
    summary: dict[str, Any] = {"mode": cfg.mode, "ckpt": str(cfg.ckpt), "num_levels": num_levels, **ds.counts}
    median_rate = statistics.median(ds.rate(v) for v in ds.video_info.values())
    T = clip_frames(model, num_levels, cfg.window.num_windows, cfg.window.tau_o, median_rate)
    crop = cfg.window.crop_size or 64
    summary.update(clip_frames=T, crop_size=crop, sample_fps=median_rate, observed_seconds=T / median_rate,
                   tau_a=cfg.window.tau_a)
    val_plan = ds.plan(ds.val, T, [cfg.window.tau_a] * len(ds.val))
    summary.update(val_dropped_unobservable=val_plan.dropped_unobservable, val_clamped=val_plan.clamped)

    # --- heads, features, training ---
    specs = ablation_specs(num_levels, cfg.ablation)
    shapes = feature_shapes(model, T, crop, num_levels, cfg.token_grid, cfg.context_steps)
    heads = build_heads(specs, shapes, ds.vocab.num_classes, cfg.head)
    main = main_head_name(num_levels)
    state_before = state_hash(model) if cfg.mode == "probe" else None

    def record(split: str, made) -> None:
        summary.update(failed_clip_counts(split, made.failed, summary["skipped_files"]))
        if made.cached is not None:
            summary[f"{split}_features_cached"] = made.cached

    t_feat = time.perf_counter()
    if cfg.mode == "probe":
        n_draws = cfg.window.tau_a_draws if cfg.window.tau_a_range is not None else 1
        w = cfg.window
        taus = [t for _ in range(n_draws) for t in draw_tau_a(len(ds.train), w.tau_a, w.tau_a_range, rng)]
        train_plan = ds.plan(ds.train * n_draws, T, taus)
        summary.update(train_dropped_unobservable=train_plan.dropped_unobservable // n_draws,
                       train_clamped=train_plan.clamped // n_draws)
        train_made = cached_features(cfg, out, "train", model, ds, train_plan, num_levels, device)
        record("train", train_made)
        val_made = cached_features(cfg, out, "val", model, ds, val_plan, num_levels, device)
        record("val", val_made)
        summary["feature_time_s"] = time.perf_counter() - t_feat
        t_train = time.perf_counter()
        result = train_on_features(heads, specs, train_made.features, cfg.optim, device, cfg.seed, log.info)
        summary["train_samples"] = result.samples
        summary["train_time_s"] = time.perf_counter() - t_train
    else:
        result = finetune(cfg, model, heads, specs, ds, T, num_levels, device, rng)
        summary.update(train_dropped_unobservable=result.dropped_unobservable, train_clamped=result.clamped,
                       train_samples=result.samples)
        t_val = time.perf_counter()
        val_made = extract_features(model, ds, val_plan, num_levels, device, cfg, "val")
        record("val", val_made)
        summary["feature_time_s"] = time.perf_counter() - t_val
        summary["train_time_s"] = t_val - t_feat
    summary.update({f"train_loss/{k}": v for k, v in result.losses.items()})
    if state_before is not None and state_hash(model) != state_before:
        raise RuntimeError("the frozen backbone changed during probing")

    # --- report ---
    evaluation = evaluate_heads(heads, specs, val_made.features, ds, cfg, main, device)
    summary.update(evaluation.metrics)
    summary.update(write_artefacts(out, cfg, heads, specs, shapes, ds, model, main, evaluation, summary))
    summary["wall_time_s"] = time.perf_counter() - t_start
    write_summary(out, cfg, summary)
    return summary
