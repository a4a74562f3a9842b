"""``hjepa evaluate``: what every level of a trained H-JEPA predicts, how far ahead, how well."""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch

from hjepa.errors import UserError
from hjepa.eval.data import eval_datamodule
from hjepa.eval.probes import split_by_group, train_probe
from hjepa.eval.scoring import ScoreResult, score_model
from hjepa.wandb_run import active_run

__all__ = ["run_evaluate", "format_evaluation", "level_horizons"]

log = logging.getLogger(__name__)


def run_evaluate(
    ckpt: str,
    out_dir: str = "runs/evaluate",
    data: str | None = None,
    reader: Literal["decord", "pyav"] = "decord",
    resolution: int | None = None,
    frame_step: int | None = None,
    num_windows: int | None = None,
    clips_per_video: int = 1,
    max_clips: int | None = 256,
    batch_size: int = 8,
    num_workers: int = 0,
    similarity: Literal["l1", "cosine"] = "l1",
    rollout: bool = True,
    probes: bool = True,
    probe_steps: int = 300,
    probe_max_steps: int = 4000,
    probe_val_fraction: float = 0.3,
    device: str = "cpu",
    seed: int = 0,
    controls: bool = False,
    actions: str | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint on held-out clips; write ``summary.json`` and plots to ``out_dir``.

    Args:
        ckpt: a ``.ckpt`` from ``hjepa pretrain`` or an ``hjepa export`` folder.
        out_dir: output folder (created).
        data: manifest of held-out videos (CSV, space-separated list or folder); default: the
            synthetic validation split, generated with the checkpoint's synthetic settings.
        reader: video decoder.
        resolution, frame_step, num_windows: clip sampling; default: the model's input record
            (``model.input_settings``: what it was trained on; else 64 px, every frame, the
            fewest windows the model accepts).
        clips_per_video: evenly spaced clips per video.
        max_clips: stop after this many clips (None: all).
        batch_size: clips per batch. Retrieval ranks the true future among the steps of
            the clips of one batch, so chance level depends on it (reported).
        num_workers: loader worker processes.
        similarity: retrieval similarity: ``l1`` (negative mean absolute difference, the
            training distance) or ``cosine``.
        rollout: also score level 1 rolled out to each higher level's horizons.
        probes: train linear and attentive probes on frozen step features.
        probe_steps: optimisation steps per probe.
        probe_max_steps: at most this many steps (samples) per level enter the probes.
        probe_val_fraction: share of clips held out to score the probes.
        device: ``cpu`` or ``cuda``.
        seed: seed of data sampling and probe splits / initialisation.
        controls: also score two inputs where nothing can be predicted (skill must be ~0):
            ``control_noise/...`` the same clips replaced by i.i.d. uniform pixel noise, and
            ``control_shuffle/...`` every clip's predictions scored against another clip's future;
            with ``actions`` also ``control_actions/...``, every clip predicted from another clip's
            actions (what the actions add must vanish there).
        actions: per-frame actions of the ``data`` videos (``video_id,frame,action``, the BabyAI
            recipe's ``frame_actions_<split>.csv``); required for a model whose level 1 takes
            actions, whose predictions then read them.

    Returns:
        The summary (also ``out_dir/summary.json``): flat, numbers, strings or null.

        Run: ``ckpt``, ``data`` (``synthetic:validation`` or the manifest), ``num_clips``,
        ``batch_size``, ``similarity``, ``num_levels``, ``skipped_videos`` (bad inputs skipped),
        ``skipped_samples``, ``wall_time_s``, ``summary_json`` (its path); ``error_plot`` /
        ``retrieval_plot`` (paths, added by ``hjepa.viz.evaluation_plots.draw_evaluation``, which
        ``hjepa evaluate`` runs after this);
        ``input/resolution``, ``input/num_windows``, and ``input/frame_step`` or
        ``input/target_fps``: how the clips were sampled (a manifest's videos are resampled to
        the model's frame rate, when the model records it).

        Per level k (1-based) and horizon j (``level{k}/h{j}/...``):

        - ``horizon_s``: seconds between the last context frame and the predicted step's last frame;
        - ``l1``: mean |prediction - layer_norm(target)|; ``cosine``: their cosine similarity;
        - ``copy_l1`` / ``copy_cosine``: the same for copy-the-present (the present step's target
          as the prediction); ``mean_l1``: for the mean target per (slot, token) over the
          evaluated set, at the future step's slot; ``copy_offset_l1``: the present plus the
          difference of the two slots' mean targets (a slot is where a step sits in its level-1
          window: step s of a level with n steps per window is in slot s % n);
        - ``skill`` = ``1 - l1 / best_baseline_l1``, the headline: above 0 only when the level
          predicts better than every baseline; ``best_baseline`` names the best of ``copy``,
          ``mean``, ``copy_offset`` and ``best_baseline_l1`` gives its error;
        - ``copy_ratio`` = ``l1 / copy_l1``, ``mean_ratio`` = ``l1 / mean_l1`` (ratios to single
          baselines; on pure noise a mean predictor has ``copy_ratio`` ~0.7, so neither is a skill);
        - ``retrieval_top1`` / ``retrieval_mrr``: the prediction picks the true future among
          all steps of all clips in the batch but the present one (top-1 accuracy, mean
          reciprocal rank); ``retrieval_chance_top1`` / ``retrieval_chance_mrr``: a random pick;
          ``copy_retrieval_top1`` / ``copy_retrieval_mrr``: the present used as the query;
          ``retrieval_clips_*`` / ``copy_retrieval_clips_*``: the same, ranked only among the
          clips' steps at the true future's time (one per clip: is it *this* clip's future?
          Time position, which targets may encode, cannot help here; chance = 1 / batch size);
        - levels >= 2 only, ``level1_rollout_retrieval_top1`` / ``_mrr`` (and ``_chance_*``):
          level 1 rolled out to the same time, ranked among the level-1 steps that end where
          level k's steps end (same number of candidates, same times); ``..._clips_*`` likewise;
        - ``count``: predictions scored.

        Per level: ``level{k}/step_s`` (seconds per step), ``level{k}/context_std_mean`` /
        ``context_std_min`` (per-dimension std of context tokens across clips, at every step and
        token position), ``level{k}/context_eff_rank``, ``target_eff_rank`` (effective rank of step
        embeddings, mean over tokens) and ``*_eff_rank_ratio`` (divided by its maximum),
        ``*_step_std_mean``; ``level{k}/target_slot_var`` (share of the target variance that the
        step's slot explains beyond its token position), ``target_token_var`` (token position
        alone) and ``target_slot_token_var`` (the two together).

        Controls (``controls``): ``control_noise/level{k}/h{j}/skill`` and ``/copy_ratio``,
        likewise ``control_shuffle/...``.

        Probes (``probes``): ``level{k}/probe_{kind}/{factor}`` (held-out accuracy for classes,
        R² for positions), ``..._train`` (training split), kind ``linear`` or ``attentive``;
        ``probe/{factor}/chance`` (majority-class accuracy; 0 for R²), ``probe/{factor}/metric``
        (``accuracy`` or ``r2``). Factors: synthetic ``activity`` (the current action) and
        ``position`` (object centres at the step's last frame); a manifest's ``label``.
    """
    from hjepa.data.transforms import to_model_input
    from hjepa.loading import load_pretrained

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips={max_clips}: must be >= 1 or None")
    if not 0 < probe_val_fraction < 1:
        raise ValueError(f"probe_val_fraction={probe_val_fraction}: must be in (0, 1)")
    if similarity not in ("l1", "cosine"):
        raise ValueError(f"similarity={similarity!r}: must be 'l1' or 'cosine'")
    model = load_pretrained(ckpt, map_location=device)
    takes_actions = model.levels[0].action_encoder is not None
    if takes_actions != (actions is not None):
        raise UserError(f"{ckpt}: level 1 takes actions: give --actions (the videos' frame-action CSV)" if takes_actions
                        else f"--actions {actions}: this checkpoint's level 1 takes no actions")
    dm = eval_datamodule(model.config, data, model.input_settings, reader=reader, resolution=resolution, frame_step=frame_step,
                         num_windows=num_windows, clips_per_video=clips_per_video, batch_size=batch_size,
                         num_workers=num_workers, seed=seed, actions=actions)
    dm.setup("validate")
    loader = dm.val_dataloader()
    if not loader:
        raise ValueError(f"no held-out clips in {data or 'the synthetic validation split'}")

    passes = [0]

    def batches():
        # score_model walks the data twice (mean target, then scores): count skips once.
        first = passes[0] == 0
        passes[0] += 1
        seen = 0
        for batch in loader:
            if first:
                dm.record_batch(batch)
            if batch["clip"].shape[0] == 0:
                continue
            if max_clips is not None and seen + batch["clip"].shape[0] > max_clips:
                batch = {k: (v[: max_clips - seen] if torch.is_tensor(v) and v.dim() > 0 else v)
                         for k, v in batch.items()}
            seen += batch["clip"].shape[0]
            yield batch
            if max_clips is not None and seen >= max_clips:
                return

    result = score_model(model, batches, to_model_input, device=device, similarity=similarity,
                         rollout_level1=rollout, probe_max_steps=probe_max_steps)
    report = dm.skip_report()
    control_metrics: dict[str, Any] = {}
    if controls:
        control_metrics = _control_summary(model, batches, to_model_input, device, similarity, seed,
                                           with_actions=actions is not None)
    summary: dict[str, Any] = {
        "ckpt": str(ckpt),
        "data": data or "synthetic:validation",
        "num_clips": result.num_clips,
        "batch_size": batch_size,
        "similarity": similarity,
        "num_levels": model.num_levels,
        "skipped_videos": report["skipped_videos"],
        "skipped_samples": report["skipped_samples"],
        # The clips as scored (from the model's input record unless given): a script can check them.
        "input/resolution": dm.resolution,
        "input/num_windows": dm.sampler.num_windows,
    }
    if dm.sampler.target_fps is not None:  # resampled to the model's rate
        summary["input/target_fps"] = dm.sampler.target_fps
    else:
        summary["input/frame_step"] = dm.sampler.frame_step or 1
    summary.update(result.metrics)
    summary.update(control_metrics)
    if probes:
        summary.update(_probe_summary(result, probe_steps, probe_val_fraction, seed))
    summary["wall_time_s"] = time.perf_counter() - t0
    summary = _finite(summary)
    summary["summary_json"] = str(out / "summary.json")
    summary = {k: summary[k] for k in sorted(summary)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    _log_to_wandb(summary)
    return summary


def noise_batches(batches: Any, seed: int = 0):
    """The batches of ``batches()`` with every clip replaced by i.i.d. uniform ``uint8`` pixels
    (times and shapes kept): no step of a clip says anything about another."""
    g = torch.Generator().manual_seed(seed)
    for batch in batches():
        clip = batch["clip"]
        noise = torch.randint(0, 256, clip.shape, generator=g, dtype=torch.uint8)
        yield {**batch, "clip": noise}


def _control_summary(model: Any, batches: Any, to_input: Any, device: str, similarity: str,
                     seed: int, with_actions: bool = False) -> dict[str, Any]:
    """Skill where there is nothing to predict: noise clips, and another clip's future; with
    actions, also predictions from another clip's actions."""
    out: dict[str, Any] = {}
    runs = {"control_noise": (lambda: noise_batches(batches, seed), False, False),
            "control_shuffle": (batches, True, False)}
    if with_actions:
        runs["control_actions"] = (batches, False, True)
    for prefix, (source, shuffle, other_actions) in runs.items():
        res = score_model(model, source, to_input, device=device, similarity=similarity, rollout_level1=False,
                          probe_max_steps=0, shuffle_future=shuffle, shuffle_actions=other_actions)
        for key, value in res.metrics.items():
            if key.endswith(("/skill", "/copy_ratio", "/best_baseline")):
                out[f"{prefix}/{key}"] = value
    return out


def _probe_summary(result: ScoreResult, steps: int, val_fraction: float, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, pd in enumerate(result.probe_data, start=1):
        if not pd.features:
            continue
        feats, groups, factors = pd.cat()
        if len(torch.unique(groups)) < 2:
            log.warning("probes need clips from at least 2 groups; level %d has %d", k, len(torch.unique(groups)))
            continue
        tr, va = split_by_group(groups, val_fraction, seed)
        for name, y in factors.items():
            classification = not y.is_floating_point()
            if classification and len(torch.unique(y[tr])) < 2:
                continue  # one class only: nothing to learn
            for kind in ("linear", "attentive"):
                res = train_probe(feats.float(), y, tr, va, kind=kind, steps=steps, seed=seed, groups=groups)
                out[f"level{k}/probe_{kind}/{name}"] = res.val
                out[f"level{k}/probe_{kind}/{name}_train"] = res.train
                out[f"probe/{name}/chance"] = res.chance
                out[f"probe/{name}/metric"] = "accuracy" if classification else "r2"
    return out


def _finite(summary: dict[str, Any]) -> dict[str, Any]:
    """NaN / inf become null (JSON has no NaN), with a warning naming the key."""
    clean = {}
    for k, v in summary.items():
        if isinstance(v, float) and not math.isfinite(v):
            log.warning("summary value %s = %s is not finite; written as null", k, v)
            v = None
        clean[k] = v
    return clean


def level_horizons(summary: dict[str, Any], k: int, suffix: str) -> list[int]:
    js = []
    for j in itertools.count(1):
        if f"level{k}/h{j}/horizon_s" not in summary:
            break
        if f"level{k}/h{j}/{suffix}" in summary:
            js.append(j)
    return js


def format_evaluation(summary: dict[str, Any]) -> str:
    """The end-of-run report: one row per level and horizon, then the collapse statistics.

    Columns: skill against the best baseline (above 0 beats them all) and which baseline that
    was, retrieval of the true future among the clips at the same time (top-1, %) beside the
    same retrieval by copying the present, chance and, for higher levels, level 1 rolled out
    to the same time; then the skill on the controls when they ran.
    """
    n = int(summary["num_levels"])
    rows = [f"hjepa evaluate: {summary['num_clips']} clips, {summary['wall_time_s']:.0f} s",
            " level  horizon   skill  best baseline  clips top-1  copy top-1  chance  L1 rolled out"]
    def cell(v: float | None, spec: str, scale: float = 1.0) -> str:  # null (not finite) or absent: "-"
        return format(scale * v, spec) if v is not None else format("-", spec.split(".")[0])

    for k in range(1, n + 1):
        for j in level_horizons(summary, k, "l1"):
            g = lambda name: summary.get(f"level{k}/h{j}/{name}")  # noqa: E731
            rows.append(f"{k:>6}  {g('horizon_s'):>6.2f}s  {cell(g('skill'), '>6.3f')}  {g('best_baseline') or '-':>13}"
                        f"  {cell(g('retrieval_clips_top1'), '>11.1f', 100)}"
                        f"  {cell(g('copy_retrieval_clips_top1'), '>10.1f', 100)}"
                        f"  {cell(g('retrieval_clips_chance_top1'), '>6.1f', 100)}"
                        f"  {cell(g('level1_rollout_retrieval_clips_top1'), '>13.1f', 100)}")
    for prefix, name in (("control_noise", "noise clips"), ("control_shuffle", "another clip's future")):
        cells = [f"L{k} {j * summary[f'level{k}/step_s']:.2f}s {summary[key]:.3f}"
                 for k in range(1, n + 1) for j in level_horizons(summary, k, "l1")
                 if (key := f"{prefix}/level{k}/h{j}/skill") in summary and summary[key] is not None
                 and summary.get(f"level{k}/step_s") is not None]
        if cells:
            rows.append(f"control, {name}: skill " + ", ".join(cells))
    for k in range(1, n + 1):
        rank, std = summary.get(f"level{k}/context_eff_rank"), summary.get(f"level{k}/context_std_mean")
        if rank is not None and std is not None:
            rows.append(f"level {k} context: effective rank {rank:.1f}, mean std {std:.3f}")
    for name in sorted({k.split("/")[1] for k in summary if k.startswith("probe/") and k.endswith("/metric")}):
        cells = [f"L{k} {kind} {summary[key]:.3f}" for k in range(1, n + 1) for kind in ("linear", "attentive")
                 if (key := f"level{k}/probe_{kind}/{name}") in summary]
        rows.append(f"probe {name} ({summary[f'probe/{name}/metric']}, chance {summary[f'probe/{name}/chance']:.3f}): "
                    + ", ".join(cells))
    if "error_plot" in summary:
        rows.append(f"plots: {summary['error_plot']}, {summary['retrieval_plot']}")
    return "\n".join(rows)


def _log_to_wandb(summary: dict[str, Any]) -> None:
    """Scalars to the active wandb run, if there is one (never starts one)."""
    if (active := active_run()) is not None:
        active[1].log({f"evaluate/{k}": v for k, v in summary.items() if isinstance(v, (int, float))})
