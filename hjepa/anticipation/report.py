"""Anticipation report: every validation segment scored as the challenge scores it, and the artefacts.

:func:`evaluate_heads` gives the metrics of every head (an action unseen in training is a miss in
the action metrics, a segment without features gets the training prior) with the chance and
prior references; :func:`write_artefacts` writes the head checkpoint, the challenge JSON and the
ablation table; :func:`write_summary` the resolved config and ``summary.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hjepa.anticipation.config import AnticipationConfig
from hjepa.anticipation.data import PreparedData
from hjepa.anticipation.features import FeatureSet
from hjepa.anticipation.head import scores_from_logits
from hjepa.anticipation.head_training import HeadSpec, predict_heads, save_head
from hjepa.anticipation.metrics import chance_recall
from hjepa.anticipation.predictions import build_challenge_json, write_challenge_json
from hjepa.anticipation.protocol import SplitEvaluation, training_prior


@dataclass
class Evaluation:
    """Scores of the heads on the validation split.

    ``metrics``: flat ``summary.json`` keys (``ablation/<head>/...``, the main head's metrics,
    the counts of scored segments, ``chance_*`` / ``prior_*`` references, ``main_head``);
    ``main_probs``: the main head's ``{output: [N, C]}`` scores of every validation segment
    (``uids``, the order the challenge JSON lists them in).
    """

    metrics: dict[str, Any]
    main_probs: dict[str, torch.Tensor]
    uids: list[str]


def failed_clip_counts(split: str, failed: list[str], skipped_files: list[str]) -> dict[str, Any]:
    """Summary keys for clips whose video failed to decode, merged into the skipped-file list."""
    if not failed:
        return {}
    files = sorted(set(skipped_files) | {e.split(": ")[0] for e in failed})
    return {f"{split}_failed_clips": len(failed), "skipped_files": files, "skipped_videos": len(files)}


def evaluate_heads(heads: nn.ModuleDict, specs: list[HeadSpec], val: FeatureSet, ds: PreparedData,
                   cfg: AnticipationConfig, main: str, device: torch.device) -> Evaluation:
    """Every validation segment, as the challenge scores them."""
    logits = predict_heads(heads, specs, val, device=device)
    ev = SplitEvaluation(ds.val_all, ds.vocab, ds.sets, training_prior(ds.train, ds.vocab))
    out: dict[str, Any] = {}
    main_probs: dict[str, torch.Tensor] = {}
    for spec in specs:
        probs, fallback = ev.scores(scores_from_logits(logits[spec.name], cfg.optim.loss), val.uids)
        metrics = ev.metrics(probs)
        out.update({f"ablation/{spec.name}/{k}": v for k, v in metrics.items()})
        if spec.name == main:
            out.update(metrics)
            main_probs = probs
    out.update(val_evaluated=len(ev.uids), val_scored_by_head=len(val), val_prior_fallback=int(fallback.sum()))
    for name, n in ds.vocab.num_classes.items():
        out[f"chance_{name}_recall5"] = chance_recall(n)
    # The constant guess "the most frequent training classes": above 5/C when the validation
    # split holds fewer classes than the vocabulary.
    prior_metrics = ev.metrics(ev.prior_scores())
    out.update({f"prior_{k}": v for k, v in prior_metrics.items() if "_recall5" in k})
    out["main_head"] = main
    return Evaluation(out, main_probs, ev.uids)


def write_artefacts(out: Path, cfg: AnticipationConfig, heads: nn.ModuleDict, specs: list[HeadSpec],
                    shapes: dict[str, tuple[int, int]], ds: PreparedData, model: nn.Module, main: str,
                    evaluation: Evaluation, summary: dict[str, Any]) -> dict[str, str]:
    """``head.pt``, ``predictions.json`` and ``ablation.md``: their paths under summary keys."""
    paths = {"head_checkpoint": str(save_head(out / "head.pt", cfg, heads, specs, shapes, ds.vocab, model, main))}
    # Every narration id of the split, as the challenge's validator requires (prior rows included).
    submission = build_challenge_json(evaluation.uids, evaluation.main_probs, ds.vocab.actions,
                                      (cfg.sls_pt, cfg.sls_tl, cfg.sls_td), cfg.top_actions)
    paths["predictions_json"] = str(write_challenge_json(out / "predictions.json", submission))
    paths["ablation_table"] = str(write_ablation_table(out / "ablation.md", summary, specs, ds.vocab.outputs))
    return paths


def write_summary(out: Path, cfg: AnticipationConfig, summary: dict[str, Any]) -> None:
    """The resolved config (``config.json``) and ``summary.json``."""
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


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
