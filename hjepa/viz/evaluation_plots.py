"""The figures of an evaluation: ``hjepa evaluate``'s summary drawn against horizon in seconds.

Evaluation computes numbers (``hjepa.eval.evaluate.run_evaluate``); this module draws them, so
the arrow runs one way (viz reads eval's result, eval knows nothing of figures).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hjepa.eval.evaluate import level_horizons
from hjepa.viz.figures import (
    Curve,
    Panel,
    horizon_curves_figure,
    level_color,
    save_figure,
)
from hjepa.wandb_run import active_run

__all__ = ["draw_evaluation", "evaluation_plots"]


def draw_evaluation(summary: dict[str, Any]) -> dict[str, Any]:
    """Draw an evaluation's plots beside its ``summary.json``, add their paths to it, rewrite it.

    Returns the summary with ``error_plot`` and ``retrieval_plot``; logs both images to the
    active wandb run, if there is one.
    """
    path = Path(summary["summary_json"])
    summary = {**summary, **evaluation_plots(summary, path.parent)}
    summary = {k: summary[k] for k in sorted(summary)}
    path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    _log_to_wandb(summary)
    return summary


def evaluation_plots(summary: dict[str, Any], out: Path) -> dict[str, str]:
    """Error and retrieval vs horizon in seconds, one line per level, baselines dashed.

    Returns ``{"error_plot": path, "retrieval_plot": path}``.
    """
    n = int(summary["num_levels"])
    err, ratio, top1, mrr, clips = [], [], [], [], []
    for k in range(1, n + 1):
        js = level_horizons(summary, k, "l1")
        if not js:
            continue
        x = [summary[f"level{k}/h{j}/horizon_s"] for j in js]
        c = level_color(k)
        g = lambda name: [summary[f"level{k}/h{j}/{name}"] for j in js]  # noqa: E731
        err += [Curve(f"level {k}", x, g("l1"), color=c),
                Curve(f"level {k} copy", x, g("copy_l1"), color=c, style="--", marker="s"),
                Curve(f"level {k} mean", x, g("mean_l1"), color=c, style="-.", marker="^")]
        ratio += [Curve(f"level {k} copy", x, g("copy_ratio"), color=c, style="--", marker="s"),
                  Curve(f"level {k} mean", x, g("mean_ratio"), color=c, style="-.", marker="^")]
        top1 += [Curve(f"level {k}", x, g("retrieval_top1"), color=c),
                 Curve(f"level {k} copy", x, g("copy_retrieval_top1"), color=c, style="--", marker="s"),
                 Curve(f"level {k} chance", x, g("retrieval_chance_top1"), color=c, style=":", marker="")]
        mrr += [Curve(f"level {k}", x, g("retrieval_mrr"), color=c),
                Curve(f"level {k} copy", x, g("copy_retrieval_mrr"), color=c, style="--", marker="s"),
                Curve(f"level {k} chance", x, g("retrieval_chance_mrr"), color=c, style=":", marker="")]
        clips += [Curve(f"level {k}", x, g("retrieval_clips_top1"), color=c),
                  Curve(f"level {k} copy", x, g("copy_retrieval_clips_top1"), color=c, style="--", marker="s"),
                  Curve(f"level {k} chance", x, g("retrieval_clips_chance_top1"), color=c, style=":", marker="")]
        if k > 1 and f"level{k}/h{js[0]}/level1_rollout_retrieval_top1" in summary:
            c1 = level_color(1)
            top1.append(Curve(f"level 1 rolled out (L{k} times)", x, g("level1_rollout_retrieval_top1"), color=c1,
                              style=(0, (1, 1.5)), marker="D"))
            mrr.append(Curve(f"level 1 rolled out (L{k} times)", x, g("level1_rollout_retrieval_mrr"), color=c1,
                             style=(0, (1, 1.5)), marker="D"))
            clips.append(Curve(f"level 1 rolled out (L{k} times)", x, g("level1_rollout_retrieval_clips_top1"),
                               color=c1, style=(0, (1, 1.5)), marker="D"))
    styles = {"--": "copy-the-present", "-.": "mean target", ":": "chance"}
    paths = {"error_plot": out / "error_vs_horizon.png", "retrieval_plot": out / "retrieval_vs_horizon.png"}
    fig = horizon_curves_figure(
        [Panel("prediction error (lower is better)", "L1 to layer-normed target", err),
         Panel("ratio to the baselines (below 1 beats it)", "error / baseline error", ratio,
               hlines=[(1.0, "as good as the baseline")], logy=_spans_decades([v for c in ratio for v in c.y]))],
        title="prediction error vs horizon, every level on one time axis", style_labels=styles,
    )
    save_figure(fig, paths["error_plot"])
    fig = horizon_curves_figure(
        [Panel("true future among all steps: top-1", "top-1 accuracy", top1, ylim=(0, 1.02)),
         Panel("true future among all steps: MRR", "mean reciprocal rank", mrr, ylim=(0, 1.02)),
         Panel("this clip's future among the clips\n(same time): top-1", "top-1 accuracy", clips, ylim=(0, 1.02))],
        title=f"retrieval among the batch's steps ({summary.get('batch_size')} clips per batch)", style_labels=styles,
    )
    save_figure(fig, paths["retrieval_plot"])
    return {k: str(v) for k, v in paths.items()}




def _spans_decades(values: list[float]) -> bool:
    """Log scale when positive values span more than a factor of 20 (a level far off its baseline)."""
    pos = [v for v in values if v > 0]
    return bool(pos) and max(pos) / min(pos) > 20


def _log_to_wandb(summary: dict[str, Any]) -> None:
    if (active := active_run()) is not None:
        wandb, run = active
        run.log({f"evaluate/{k}": wandb.Image(summary[k]) for k in ("error_plot", "retrieval_plot")})
