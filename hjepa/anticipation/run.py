"""``run_anticipation``: probe or fine-tune a pretrained H-JEPA for action anticipation.

The run, step by step:

1. load the H-JEPA (``hjepa.load_pretrained``) and the annotations; the action classes are the
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
4. heads (``heads.ablation_specs``): the main head reads every level's context and
   predictions; with ``ablation`` the heads on level 1 only and on levels 1..k, with and
   without predictions, train in the same run on the same data;
5. metrics on **every** validation segment, as the challenge scores them
   (``protocol.SplitEvaluation``): an action unseen in training is a miss in the action
   metrics, a segment with nothing observable (or no readable video) gets the training prior;
   overall, unseen-participant and tail-class recall@5; the head checkpoint, the challenge
   JSON (every narration id), an ablation table and ``summary.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from hjepa.anticipation.annotations import (
    ActionVocab,
    Segment,
    VideoTiming,
    build_vocab,
    keep_known,
    read_annotations,
    read_class_names,
    read_video_info,
)
from hjepa.anticipation.clips import ObservedClips, collate_clips, read_video_headers, video_path, worker_count
from hjepa.anticipation.config import AnticipationConfig, AnticipationOptimConfig, DataConfig, HeadConfig, WindowConfig
from hjepa.anticipation.features import FeatureSet, clip_features, clip_frames, feature_shapes
from hjepa.anticipation.head import head_loss, scores_from_logits
from hjepa.anticipation.metrics import chance_recall
from hjepa.anticipation.predictions import build_challenge_json, write_challenge_json
from hjepa.anticipation.protocol import (
    ProtocolSets,
    SplitEvaluation,
    protocol_sets,
    training_prior,
)
from hjepa.anticipation.heads import (
    HeadSpec,
    ablation_specs,
    build_heads,
    fit_heads,
    lr_factor,
    main_head_name,
    param_groups,
    predict_heads,
    set_input_stats,
)
from hjepa.anticipation.windows import WindowPlan, draw_tau_a, plan_windows
from hjepa.input_settings import InputSettings

log = logging.getLogger(__name__)


# --- the entry point ------------------------------------------------------------------------


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

    ds = prepare_data(cfg, out, world=trained.synthetic if trained is not None else None)
    summary: dict[str, Any] = {"mode": cfg.mode, "ckpt": str(cfg.ckpt), "num_levels": num_levels, **ds.counts}
    median_rate = statistics.median(ds.rate(v) for v in ds.video_info.values())
    T = clip_frames(model, num_levels, cfg.window.num_windows, cfg.window.tau_o, median_rate)
    crop = cfg.window.crop_size or 64
    summary.update(clip_frames=T, crop_size=crop, sample_fps=median_rate, observed_seconds=T / median_rate,
                   tau_a=cfg.window.tau_a)
    val_plan = ds.plan(ds.val, T, [cfg.window.tau_a] * len(ds.val))
    summary.update(val_dropped_unobservable=val_plan.dropped_unobservable, val_clamped=val_plan.clamped)
    specs = ablation_specs(num_levels, cfg.ablation)
    shapes = feature_shapes(model, T, crop, num_levels, cfg.token_grid, cfg.context_steps)
    heads = build_heads(specs, shapes, ds.vocab.num_classes, cfg.head)
    main = main_head_name(num_levels)
    state_before = _state_hash(model) if cfg.mode == "probe" else None

    t_feat = time.perf_counter()
    if cfg.mode == "probe":
        n_draws = cfg.window.tau_a_draws if cfg.window.tau_a_range is not None else 1
        w = cfg.window
        taus = [t for _ in range(n_draws) for t in draw_tau_a(len(ds.train), w.tau_a, w.tau_a_range, rng)]
        train_plan = ds.plan(ds.train * n_draws, T, taus)
        summary.update(train_dropped_unobservable=train_plan.dropped_unobservable // n_draws,
                       train_clamped=train_plan.clamped // n_draws)
        train_feats = cached_features(cfg, out, "train", model, ds, train_plan, num_levels, device, summary)
        val_feats = cached_features(cfg, out, "val", model, ds, val_plan, num_levels, device, summary)
        summary["feature_time_s"] = time.perf_counter() - t_feat
        t_train = time.perf_counter()
        labelled = train_feats.subset(train_feats.labelled())
        set_input_stats(heads, specs, labelled.tokens)
        losses = fit_heads(heads, specs, train_feats, cfg.optim, device, cfg.seed, log.info)
        summary["train_samples"] = len(labelled)
        summary["train_time_s"] = time.perf_counter() - t_train
    else:
        losses = finetune(cfg, model, heads, specs, ds, T, num_levels, device, rng, summary)
        t_val = time.perf_counter()
        val_feats = extract_features(model, ds, val_plan, num_levels, device, cfg, summary, "val")
        summary["feature_time_s"] = time.perf_counter() - t_val
        summary["train_time_s"] = t_val - t_feat
    summary.update({f"train_loss/{k}": v for k, v in losses.items()})
    if state_before is not None and _state_hash(model) != state_before:
        raise RuntimeError("the frozen backbone changed during probing")

    # --- evaluation: every validation segment, as the challenge scores them ---
    logits = predict_heads(heads, specs, val_feats, device=device)
    ev = SplitEvaluation(ds.val_all, ds.vocab, ds.sets, training_prior(ds.train, ds.vocab))
    main_probs: dict[str, torch.Tensor] = {}
    for spec in specs:
        probs, fallback = ev.scores(scores_from_logits(logits[spec.name], cfg.optim.loss), val_feats.uids)
        metrics = ev.metrics(probs)
        summary.update({f"ablation/{spec.name}/{k}": v for k, v in metrics.items()})
        if spec.name == main:
            summary.update(metrics)
            main_probs = probs
    summary.update(val_evaluated=len(ev.uids), val_scored_by_head=len(val_feats),
                   val_prior_fallback=int(fallback.sum()))
    for name, n in ds.vocab.num_classes.items():
        summary[f"chance_{name}_recall5"] = chance_recall(n)
    # The constant guess "the most frequent training classes": above 5/C when the validation
    # split holds fewer classes than the vocabulary.
    prior_metrics = ev.metrics(ev.prior_scores())
    summary.update({f"prior_{k}": v for k, v in prior_metrics.items() if "_recall5" in k})
    summary["main_head"] = main

    # --- artefacts ---
    summary["head_checkpoint"] = str(save_head(out / "head.pt", cfg, heads, specs, shapes, ds.vocab, model, main))
    # Every narration id of the split, as the challenge's validator requires (prior rows included).
    submission = build_challenge_json(ev.uids, main_probs, ds.vocab.actions, (cfg.sls_pt, cfg.sls_tl, cfg.sls_td),
                                      cfg.top_actions)
    summary["predictions_json"] = str(write_challenge_json(out / "predictions.json", submission))
    summary["ablation_table"] = str(write_ablation_table(out / "ablation.md", summary, specs, ds.vocab.outputs))
    summary["wall_time_s"] = time.perf_counter() - t_start
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def resolve_window(cfg: AnticipationConfig, trained: InputSettings | None) -> AnticipationConfig:
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


# --- data ----------------------------------------------------------------------------------


class PreparedData:
    """Annotations, vocabulary, per-video fps and paths of a run, with their counts.

    ``train`` / ``val``: the segments whose video is readable (the ones features are computed
    for); ``val_all``: every validation segment read, each of which is scored (those without
    features by the training prior); ``sets``: the unseen-participant and tail-class lists.
    """

    def __init__(self, cfg: AnticipationConfig, train: list[Segment], val: list[Segment], vocab: ActionVocab,
                 video_info: dict[str, VideoTiming], paths: dict[str, Path], counts: dict[str, Any],
                 val_all: list[Segment] | None = None, sets: ProtocolSets | None = None) -> None:
        self.cfg, self.train, self.val, self.vocab = cfg, train, val, vocab
        self.video_info, self.paths, self.counts = video_info, paths, counts
        self.val_all = list(val) if val_all is None else val_all
        self.sets = sets if sets is not None else protocol_sets(train, self.val_all)

    def rate(self, info: VideoTiming) -> float:
        """Frames per second of the clips cut from this video."""
        w = self.cfg.window
        if w.sample_fps is not None:
            return w.sample_fps
        return info.fps / (w.frame_step or 1)

    def plan(self, segments: list[Segment], num_frames: int, taus: list[float]) -> WindowPlan:
        w = self.cfg.window
        if w.sample_fps is not None:
            return plan_windows(segments, self.video_info, num_frames, taus, sample_fps=w.sample_fps)
        return plan_windows(segments, self.video_info, num_frames, taus, frame_step=w.frame_step or 1)


def prepare_data(cfg: AnticipationConfig, out: Path, world: dict[str, Any] | None = None) -> PreparedData:
    """Read the annotations (writing the synthetic default first if none are given).

    ``world``: the synthetic config the backbone was pretrained on; synthetic data are written
    from it (None: the generator's defaults).
    """
    d = cfg.data
    train_path, val_path, video_dir, pattern = d.train, d.val, d.video_dir, d.video_pattern
    info_path, verb_path, noun_path = d.video_info, d.verb_classes, d.noun_classes
    if not train_path:
        from hjepa.anticipation.synthetic import synthetic_annotations

        root = Path(d.synthetic_dir) if d.synthetic_dir else out / "synthetic"
        syn = synthetic_annotations(root, d.synthetic_train_videos, d.synthetic_val_videos, cfg.seed, world)
        train_path, val_path, video_dir, pattern = str(syn.train), str(syn.val), str(syn.video_dir), syn.video_pattern
        info_path, verb_path, noun_path = str(syn.video_info), str(syn.verb_classes), str(syn.noun_classes)
    table = read_video_info(info_path) if info_path else None
    read = lambda p: read_annotations(p, d.format, d.time_source, d.frame_fps, table)  # noqa: E731
    train, val = read(train_path), read(val_path)
    # The unseen/tail lists describe the dataset, so they come from the whole training file
    # (before max_train shortens it for quick runs).
    sets = protocol_sets(train, val, d.tail_verbs, d.tail_nouns, d.unseen_participants)
    if d.max_train:
        train = train[: d.max_train]
    if d.max_val:
        val = val[: d.max_val]
    nv = len(read_class_names(verb_path)) if verb_path else None
    nn_ = len(read_class_names(noun_path)) if noun_path else None
    vocab = build_vocab(train, nv, nn_)
    if "verb" in vocab.outputs and nv is None:
        # Without class files the verb/noun ranges cover both splits, so validation ids index too.
        vocab = ActionVocab(vocab.outputs, max(vocab.num_verbs, 1 + max(s.verb for s in val)),
                            max(vocab.num_nouns, 1 + max(s.noun for s in val)), vocab.actions)
    _, _, report = keep_known(val, vocab)
    paths = {s.video_id: video_path(video_dir, pattern, s) for s in train + val}
    skipped: list[str] = []
    if table is None:
        table, probe = read_video_headers(paths, d.reader)
        skipped = probe.skipped_files
    else:
        missing = sorted(v for v in paths if not paths[v].is_file())
        skipped = [f"{paths[v]}: file does not exist" for v in missing]
        for line in skipped[:5]:
            log.warning("skipping video %s", line)
        if len(skipped) > 5:
            log.warning("... and %d more missing videos (all listed in summary.json)", len(skipped) - 5)
        gone = set(missing)
        table = {k: v for k, v in table.items() if k not in gone}
    usable = lambda segs: [s for s in segs if s.video_id in table]  # noqa: E731
    counts = {
        "train_segments": len(train),
        "val_segments": len(val),
        "val_unseen_action_segments": report.dropped_segments,
        "val_unseen_actions": report.dropped_actions,
        "val_unseen_participants": sorted(sets.unseen_participants),
        "val_unseen_participant_segments": sum(s.participant_id in sets.unseen_participants for s in val),
        **_tail_counts(sets, vocab),
        "protocol_lists": dict(sets.source),
        "dropped_no_video": len(train) + len(val) - len(usable(train)) - len(usable(val)),
        "skipped_videos": len(skipped),
        "skipped_files": skipped,
        "num_verbs": vocab.num_verbs,
        "num_nouns": vocab.num_nouns,
        "num_actions": len(vocab.actions),
    }
    val_all = val
    train, val = usable(train), usable(val)
    if not train:
        raise ValueError(f"no training segment has a readable video (skipped: {skipped[:5]})")
    if not val:
        raise ValueError(f"no validation segment has a readable video (skipped: {skipped[:5]})")
    log.info("annotations: %d train, %d val (%d of an action unseen in training: misses in the action metrics)",
             len(train), len(val_all), report.dropped_segments)
    return PreparedData(cfg, train, val, vocab, table, paths, counts, val_all, sets)


def _tail_counts(sets: ProtocolSets, vocab: ActionVocab) -> dict[str, int]:
    if "verb" in vocab.outputs:
        return {"tail_verbs": len(sets.tail_verbs), "tail_nouns": len(sets.tail_nouns)}
    return {"tail_actions": len(sets.tail_labels)}


# --- features ------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _autocast(device: torch.device, precision: str):
    enabled = precision == "bf16" and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _loader(ds: PreparedData, plan: WindowPlan, cfg: AnticipationConfig, shuffle: bool, batch_size: int,
            seed: int = 0) -> DataLoader:
    dataset = ObservedClips(plan.items, ds.paths, cfg.window.crop_size or 64, cfg.data.reader)
    workers = worker_count(cfg.data.num_workers)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, collate_fn=collate_clips,
                      generator=torch.Generator().manual_seed(seed) if shuffle else None,
                      persistent_workers=False)


def _targets(vocab: ActionVocab, segments: list[Segment]) -> dict[str, torch.Tensor]:
    out = {name: torch.full((len(segments),), -1, dtype=torch.long) for name in vocab.outputs}
    for i, s in enumerate(segments):
        t = vocab.targets(s)
        if t is not None:
            for name, c in t.items():
                out[name][i] = c
    return out


def _model_input(clip_uint8: torch.Tensor, device: torch.device) -> torch.Tensor:
    from hjepa.data.transforms import to_model_input

    return to_model_input(clip_uint8.to(device, non_blocking=True))


def extract_features(model: nn.Module, ds: PreparedData, plan: WindowPlan, num_levels: int, device: torch.device,
                     cfg: AnticipationConfig, summary: dict[str, Any], split: str) -> FeatureSet:
    """Features of every planned clip (no gradient); clips whose video fails are skipped and counted."""
    loader = _loader(ds, plan, cfg, False, cfg.feature_batch_size)
    parts: dict[str, list[torch.Tensor]] = {}
    rows: list[int] = []
    errors: list[str] = []
    with torch.no_grad(), _autocast(device, cfg.precision):
        for batch in loader:
            errors += batch["errors"]
            if batch["clip"] is None:
                continue
            idx = batch["index"].tolist()
            items = [plan.items[i] for i in idx]
            feats = clip_features(model, _model_input(batch["clip"], device),
                                  [w.tau_a for _, w in items], [ds.rate(ds.video_info[s.video_id]) for s, _ in items],
                                  num_levels, token_grid=cfg.token_grid, context_steps=cfg.context_steps)
            for k, v in feats.items():
                parts.setdefault(k, []).append(v.to(getattr(torch, cfg.feature_dtype)).cpu())
            rows += idx
    if errors:
        for e in sorted(set(errors))[:20]:
            log.warning("skipped clip: %s", e)
        summary[f"{split}_failed_clips"] = len(errors)
        summary["skipped_files"] = sorted(set(summary.get("skipped_files", [])) | {e.split(": ")[0] for e in errors})
        summary["skipped_videos"] = len(summary["skipped_files"])
    if not rows:
        raise ValueError(f"no {split} clip could be decoded ({len(errors)} failed, e.g. {errors[:3]})")
    segs = [plan.items[i][0] for i in rows]
    return FeatureSet(
        {k: torch.cat(v) for k, v in parts.items()},
        _targets(ds.vocab, segs),
        [s.uid for s in segs],
        torch.tensor([plan.items[i][1].tau_a for i in rows]),
    )


def _cache_key(cfg: AnticipationConfig, split: str, plan: WindowPlan, num_levels: int, model: nn.Module) -> str:
    h = hashlib.sha256()
    if cfg.ckpt and Path(cfg.ckpt).exists():
        st = Path(cfg.ckpt).stat()
        h.update(f"{Path(cfg.ckpt).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    else:
        h.update(_state_hash(model).encode())
    h.update(json.dumps([split, num_levels, cfg.window.crop_size, cfg.data.reader, cfg.token_grid,
                         cfg.context_steps, cfg.feature_dtype]).encode())
    for seg, w in plan.items:
        h.update(f"{seg.uid}|{seg.video_id}|{w.frames}|{w.tau_a:.6f}".encode())
    return h.hexdigest()


def cached_features(cfg: AnticipationConfig, out: Path, split: str, model: nn.Module, ds: PreparedData,
                    plan: WindowPlan, num_levels: int, device: torch.device, summary: dict[str, Any]) -> FeatureSet:
    """``extract_features`` with a cache file that is reused only when its key matches exactly."""
    path = out / f"features_{split}.pt"
    key = _cache_key(cfg, split, plan, num_levels, model)
    if cfg.cache_features and path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("key") == key:
            log.info("reusing cached %s features from %s", split, path)
            summary[f"{split}_features_cached"] = True
            return FeatureSet(saved["tokens"], saved["targets"], saved["uids"], saved["tau_a"])
    feats = extract_features(model, ds, plan, num_levels, device, cfg, summary, split)
    if cfg.cache_features:
        torch.save({"key": key, "tokens": feats.tokens, "targets": feats.targets, "uids": feats.uids,
                    "tau_a": feats.tau_a}, path)
    summary[f"{split}_features_cached"] = False
    return feats


def _state_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# --- fine-tuning ---------------------------------------------------------------------------


def finetune(cfg: AnticipationConfig, model: nn.Module, heads: nn.ModuleDict, specs: list[HeadSpec],
             ds: PreparedData, T: int, num_levels: int, device: torch.device, rng: random.Random,
             summary: dict[str, Any]) -> dict[str, float]:
    """Train the backbone (per-level learning rates) under the main head; ablation heads read detached features.

    Level k's context encoder and predictor train at ``level_lrs[k]`` (0: frozen); the EMA target
    encoders stay as pretrained, since predictions live in their space. The backbone runs in eval
    mode (no dropout or drop-path), so features are the ones the probe would see. Training clips
    get fresh ``tau_a`` draws every epoch when ``window.tau_a_range`` is set.
    """
    lrs = cfg.level_lrs if cfg.level_lrs is not None else [0.1 * cfg.optim.lr] * num_levels
    groups = param_groups(heads, cfg.optim.weight_decay, cfg.optim.lr)
    model.requires_grad_(False)
    for k, lr in enumerate(lrs):
        trainable = model.trainable_parts(k)  # never the EMA target encoder
        if lr > 0 and trainable:
            for m in trainable:
                m.requires_grad_(True)
            groups += param_groups(nn.ModuleList(trainable), cfg.optim.weight_decay, lr)
    heads.to(device).train()
    optim = torch.optim.AdamW(groups, lr=cfg.optim.lr)
    base = [g["lr"] for g in optim.param_groups]
    main = main_head_name(num_levels)
    first_plan = ds.plan(ds.train, T, draw_tau_a(len(ds.train), cfg.window.tau_a, cfg.window.tau_a_range, rng))
    summary.update(train_dropped_unobservable=first_plan.dropped_unobservable, train_clamped=first_plan.clamped)
    # Input standardisation from the pretrained features of (up to) 256 training clips, fixed from then on.
    sample = WindowPlan(first_plan.items[:256], 0, 0, 0)
    set_input_stats(heads, specs, extract_features(model, ds, sample, num_levels, device, cfg, {}, "train").tokens)
    steps_per_epoch = math.ceil(len(first_plan.items) / cfg.optim.batch_size)
    total, warmup = cfg.optim.epochs * steps_per_epoch, int(cfg.optim.warmup_epochs * steps_per_epoch)
    step, last, samples = 0, {}, 0
    for epoch in range(cfg.optim.epochs):
        plan = first_plan if epoch == 0 else ds.plan(
            ds.train, T, draw_tau_a(len(ds.train), cfg.window.tau_a, cfg.window.tau_a_range, rng))
        sums = {s.name: 0.0 for s in specs}
        seen = 0
        for batch in _loader(ds, plan, cfg, True, cfg.optim.batch_size, cfg.seed + epoch):
            if batch["clip"] is None:
                continue
            items = [plan.items[i] for i in batch["index"].tolist()]
            targets = {k: v.to(device) for k, v in _targets(ds.vocab, [s for s, _ in items]).items()}
            keep = targets[ds.vocab.outputs[0]] >= 0
            if not keep.any():
                continue
            for group, lr in zip(optim.param_groups, base):
                group["lr"] = lr * lr_factor(step, total, warmup)
            with _autocast(device, cfg.precision):
                feats = clip_features(model, _model_input(batch["clip"], device), [w.tau_a for _, w in items],
                                      [ds.rate(ds.video_info[s.video_id]) for s, _ in items], num_levels, grad=True,
                                      token_grid=cfg.token_grid, context_steps=cfg.context_steps)
            targets = {k: v[keep] for k, v in targets.items()}
            loss = 0.0
            for spec in specs:
                src = [feats[s][keep] if spec.name == main else feats[s][keep].detach() for s in spec.sources]
                l_head = head_loss(heads[spec.name](src), targets, cfg.optim.loss, cfg.optim.label_smoothing,
                                   cfg.optim.focal_gamma, cfg.optim.focal_alpha)
                sums[spec.name] += l_head.item() * int(keep.sum())
                loss = loss + l_head
            optim.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            optim.step()
            step += 1
            seen += int(keep.sum())
        samples += seen
        last = {k: v / max(seen, 1) for k, v in sums.items()}
        log.info("epoch %d/%d %s", epoch + 1, cfg.optim.epochs, " ".join(f"{k}={v:.3f}" for k, v in last.items()))
    model.requires_grad_(False)
    model.eval()
    summary["train_samples"] = samples // cfg.optim.epochs
    return last


# --- artefacts -----------------------------------------------------------------------------


def save_head(path: Path, cfg: AnticipationConfig, heads: nn.ModuleDict, specs: list[HeadSpec],
              shapes: dict[str, tuple[int, int]],
              vocab: ActionVocab, model: nn.Module, main: str) -> Path:
    """Every head's weights with what rebuilds them (plain values; loads with ``weights_only=True``).

    In fine-tune mode the fine-tuned backbone's weights and config are stored as well.
    """
    ckpt: dict[str, Any] = {
        "main_head": main,
        "heads": {s.name: {"sources": list(s.sources), "state_dict": heads[s.name].state_dict()} for s in specs},
        "shapes": {k: list(v) for k, v in shapes.items()},
        "num_classes": vocab.num_classes,
        "head_config": asdict(cfg.head),
        "vocab": vocab.to_dict(),
        "config": cfg.to_dict(),
    }
    if cfg.mode == "finetune":
        ckpt["backbone_state_dict"] = model.state_dict()
        ckpt["model_config"] = model.config.to_dict()
    torch.save(ckpt, path)
    return path


def load_head(path: str | Path) -> tuple[nn.ModuleDict, list[HeadSpec], ActionVocab, dict[str, Any]]:
    """Rebuild the heads saved by :func:`save_head`: (heads, specs, vocab, the raw checkpoint)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    specs = [HeadSpec(name, tuple(h["sources"])) for name, h in ckpt["heads"].items()]
    shapes = {k: tuple(v) for k, v in ckpt["shapes"].items()}
    heads = build_heads(specs, shapes, ckpt["num_classes"], HeadConfig(**ckpt["head_config"]))
    for s in specs:
        heads[s.name].load_state_dict(ckpt["heads"][s.name]["state_dict"], strict=True)
    return heads, specs, ActionVocab.from_dict(ckpt["vocab"]), ckpt


def write_ablation_table(path: Path, summary: dict[str, Any], specs: list[HeadSpec], outputs: tuple[str, ...]) -> Path:
    """Markdown table: one row per head, class-mean top-5 recall and top-1 accuracy per output."""
    cols = [f"{o} R@5" for o in outputs] + [f"{o} top-1" for o in outputs]
    lines = ["| head | token sets | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for s in specs:
        vals = [summary[f"ablation/{s.name}/{o}_recall5"] for o in outputs]
        vals += [summary[f"ablation/{s.name}/{o}_top1"] for o in outputs]
        lines.append(f"| {s.name} | {' '.join(s.sources)} | " + " | ".join(f"{100 * v:.1f}" for v in vals) + " |")
    chance = " / ".join(f"{o} {100 * summary[f'chance_{o}_recall5']:.1f}" for o in outputs)
    prior = " / ".join(f"{o} {100 * summary[f'prior_{o}_recall5']:.1f}" for o in outputs)
    lines.append(f"\nR@5 of random scores: {chance}; of the training-frequency prior: {prior}. "
                 f"Validation segments scored: {summary['val_evaluated']} (every one; "
                 f"{summary['val_prior_fallback']} without features, scored by the prior; "
                 f"{summary['val_unseen_action_segments']} of an action unseen in training, action misses).")
    subsets = [f"{sub} " + " / ".join(f"{o} {100 * summary[f'{o}_recall5/{sub}']:.1f}" for o in outputs)
               for sub in ("unseen", "tail") if all(f"{o}_recall5/{sub}" in summary for o in outputs)]
    if subsets:
        lines.append(f"Main head R@5 on the challenge's subsets: {'; '.join(subsets)}.")
    path.write_text("\n".join(lines) + "\n")
    return path
