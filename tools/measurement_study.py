#!/usr/bin/env python
"""What a checkpoint's predictions are worth, measured so that they can fail; writes a markdown page.

    python tools/measurement_study.py --ckpt runs/pretrain/<run>/checkpoints/last.ckpt --out docs/measurements.md

Per level and horizon, on held-out synthetic clips: skill against the best of copy-the-present,
the per-(slot, token) mean target and copy + slot offset; the same skill on two controls where it
must vanish (i.i.d. noise clips, another clip's future); retrieval of the clip's true future
beside the same retrieval by copying the present; then how much of the target variance the window
slot explains, and the prediction error past the training length of a clip twice as long.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True, help="a pretraining .ckpt or an export folder")
    ap.add_argument("--out", required=True, help="markdown page to write (its folder gets summary.json)")
    ap.add_argument("--max_clips", type=int, default=64)
    ap.add_argument("--title", default=None)
    args = ap.parse_args(argv)

    from hjepa.data.transforms import to_model_input
    from hjepa.eval.data import eval_datamodule
    from hjepa.eval.evaluate import run_evaluate
    from hjepa.viz.evaluation_plots import draw_evaluation
    from hjepa.eval.long_clips import length_errors
    from hjepa.loading import load_pretrained

    t0 = time.perf_counter()
    out = Path(args.out)
    work = out.parent / (out.stem + "_evaluate")
    summary = draw_evaluation(run_evaluate(args.ckpt, str(work), max_clips=args.max_clips, probes=False, controls=True))

    model = load_pretrained(args.ckpt).eval()
    trained = model.input_settings
    windows = trained.num_windows if trained else -(-model.config.min_frames() // model.config.frames_per_window)
    dm = eval_datamodule(model.config, None, trained, num_windows=2 * windows, batch_size=16)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    lengths = length_errors(model, to_model_input(batch["clip"]), windows * model.config.frames_per_window)

    g = summary.get
    lines = [f"# {args.title or 'Measurements of ' + str(args.ckpt)}", "",
             f"`python tools/measurement_study.py --ckpt {args.ckpt} --out {args.out}` "
             f"({summary['num_clips']} held-out synthetic clips, batches of {summary['batch_size']}; "
             f"{time.perf_counter() - t0:.0f} s).", "",
             "| level | ahead | skill | best baseline | copy ratio | skill, noise clips | skill, other clip's future "
             "| clip top-1 | copy top-1 | level 1 rolled out top-1 |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    pct = lambda v: "-" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    num = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for k in range(1, model.num_levels + 1):
        j = 1
        while f"level{k}/h{j}/skill" in summary:
            key = f"level{k}/h{j}"
            lines.append(
                f"| {k} | {g(key + '/horizon_s'):.2f} s | {num(g(key + '/skill'))} | {g(key + '/best_baseline')} "
                f"| {num(g(key + '/copy_ratio'))} | {num(g('control_noise/' + key + '/skill'))} "
                f"| {num(g('control_shuffle/' + key + '/skill'))} | {pct(g(key + '/retrieval_clips_top1'))} "
                f"| {pct(g(key + '/copy_retrieval_clips_top1'))} | {pct(g(key + '/level1_rollout_retrieval_clips_top1'))} |")
            j += 1
    lines += ["", "Skill is `1 - error / best baseline error` (L1 to the layer-normed target); above 0 the level "
              "knows something about its future that no baseline does. Top-1: the prediction picks this clip's "
              f"true future among the {summary['batch_size']} clips of its batch at the same time "
              f"(chance {pct(g('level1/h1/retrieval_clips_chance_top1'))}).", "",
              "| level | target variance: slot beyond token | token position | slot and token | context std across clips "
              "| context eff. rank | target eff. rank | error past / within training length |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for k in range(1, model.num_levels + 1):
        e = lengths[k - 1]
        lines.append(f"| {k} | {pct(g(f'level{k}/target_slot_var'))} | {pct(g(f'level{k}/target_token_var'))} "
                     f"| {pct(g(f'level{k}/target_slot_token_var'))} | {num(g(f'level{k}/context_std_mean'))} "
                     f"| {g(f'level{k}/context_eff_rank'):.1f} | {g(f'level{k}/target_eff_rank'):.1f} "
                     f"| {e.ratio:.3f} ({e.past:.3f} / {e.inside:.3f}) |")
    lines += ["", f"Long clips: {2 * windows} windows against the {windows} the model was trained on; the ratio "
              "compares predictions whose context ends past the training length with those whose target ends "
              "within it.", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    record = {"summary": summary, "length_errors": [e.__dict__ for e in lengths]}
    (work / "study.json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
