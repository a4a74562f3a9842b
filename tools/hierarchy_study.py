#!/usr/bin/env python
"""Does level 2 earn its keep? The hierarchy study, from scratch, on one recipe and several worlds.

For every world (the built-in synthetic default; the BabyAI recipe of ``datasets/babyai``) and
every pretraining seed, it runs the same three jobs a user would:

1. ``hjepa pretrain --config <recipe>`` (the same model config in every world; a world only
   names its data);
2. ``hjepa evaluate`` on held-out clips (the synthetic validation split; BabyAI's test episodes):
   each level's skill against the best simple baseline, and level 2's retrieval MRR beside
   level 1 rolled out to the same horizon;
3. ``hjepa anticipate`` once per head seed, frozen probe with the per-level ablation: next
   action / subgoal top-1 and class-mean recall@5 with level 1 alone (``L1``) and levels 1–2
   (``L1-2``), beside the training prior.

It writes a Markdown table (per seed, then mean ± spread over seeds) and a JSON of every figure.
Nothing is tuned here: the recipe, the worlds and the thresholds come from their files.

    python tools/hierarchy_study.py --out docs/hierarchy.md --babyai data/babyai
    python tools/hierarchy_study.py --out /tmp/h.md --worlds synthetic --seeds 0 --head_seeds 0 --steps 100

Each pretraining takes about 10 minutes on 2 idle CPU cores (1000 steps); the full default
(2 worlds x 3 seeds x 3 head seeds) about 2-3 hours.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The anticipation heads recorded; the table compares level 1 alone with the whole hierarchy
# (levels 1-2, what they observed and what they predict), fixed before any run was read.
HEADS = ("L1", "L1+pred", "L1-2", "L1-2+pred")
FULL = "L1-2+pred"


def hjepa(*args: str) -> None:
    """Run one ``hjepa`` command in a fresh process, as a user would; stop on failure."""
    cmd = [sys.executable, "-m", "hjepa.cli.main", *args]
    print("$ hjepa " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def prior_top1(train_csv: Path, val_csv: Path) -> float:
    """Action top-1 of the training prior (always the most frequent training (verb, noun)) on ``val_csv``."""
    def actions(path: Path) -> list[tuple[str, str]]:
        with open(path, newline="") as f:
            return [(r["verb_class"], r["noun_class"]) for r in csv.DictReader(f)]
    top = collections.Counter(actions(train_csv)).most_common(1)[0][0]
    val = actions(val_csv)
    return sum(a == top for a in val) / len(val)


def fit_gap(metrics_csv: Path, level: int, last: int = 20) -> tuple[float | None, float | None]:
    """Level ``level``'s skill as logged by the pretraining: mean of the last ``last`` training-batch
    values, and the last value on the validation clips (the same measure on clips it never trains on).
    None where the log has no such value (no log, a recipe without that level): the table shows '-'."""
    if not metrics_csv.is_file():
        return None, None
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    train = [float(r[f"train/level{level}/skill"]) for r in rows if r.get(f"train/level{level}/skill")][-last:]
    val = [float(r[f"val/level{level}/skill"]) for r in rows if r.get(f"val/level{level}/skill")]
    return (statistics.fmean(train) if train else None), (val[-1] if val else None)


def worlds(babyai: str | None) -> dict[str, dict[str, Any]]:
    """What each world adds to the recipe: its training data, held-out clips, anticipation config."""
    out: dict[str, dict[str, Any]] = {
        "synthetic": {"pretrain": [], "evaluate": [], "anticipate": ["--config", "configs/anticipate/synthetic.yaml"],
                      # written by the anticipation run under its out_dir
                      "annotations": lambda out: (out / "synthetic" / "annotations_train.csv",
                                                  out / "synthetic" / "annotations_validation.csv")},
    }
    if babyai:
        root = Path(babyai).resolve()
        out["babyai"] = {
            "pretrain": ["--data.train_manifests", str(root / "manifest_train.csv"),
                         "--data.val_manifests", str(root / "manifest_val.csv")],
            "evaluate": ["--data", str(root / "manifest_test.csv")],
            "anticipate": ["--config", "configs/anticipate/babyai.yaml", "--data.video_dir", str(root),  # the CSVs name videos/<id>.mp4
                           "--data.train", str(root / "subgoals_train.csv"),
                           "--data.val", str(root / "subgoals_test.csv"),
                           "--data.verb_classes", str(root / "subgoal_verb_classes.csv"),
                           "--data.noun_classes", str(root / "subgoal_noun_classes.csv"),
                           "--data.video_info", str(root / "video_info.csv")],
            "annotations": lambda out: (root / "subgoals_train.csv", root / "subgoals_test.csv"),
        }
    return out


def run_world(name: str, world: dict[str, Any], args: argparse.Namespace, work: Path,
              done: Any = None) -> list[dict[str, Any]]:
    rows = []
    for seed in args.seeds:
        run = work / name / f"seed{seed}"
        ckpt = run / "pretrain" / "checkpoints" / "last.ckpt"
        t0 = time.perf_counter()
        if not (run / "pretrain" / "summary.json").is_file():  # written when a pretraining ends (a kill leaves none)
            hjepa("pretrain", "--config", args.recipe, "--seed_everything", str(seed), "--run_dir",
                  str(run / "pretrain"), "--logger.wandb=false", *(["--trainer.max_steps", str(args.steps)]
                                                                   if args.steps else []), *world["pretrain"])
        # the pretraining's own time, also when it was kept from an earlier invocation
        pretrain_s = json.loads((run / "pretrain" / "summary.json").read_text()).get("wall_time_s")
        scored = run / "evaluate" / "summary.json"
        if not (scored.is_file() and scored.stat().st_mtime > ckpt.stat().st_mtime):  # kept when newer than its checkpoint
            hjepa("evaluate", "--ckpt", str(ckpt), "--out_dir", str(run / "evaluate"), "--probes", "false",
                  "--controls", "true", *world["evaluate"])
        ev = json.loads(scored.read_text())
        row: dict[str, Any] = {"world": name, "seed": seed, "pretrain_s": pretrain_s}
        j = 1
        while f"level2/h{j}/skill" in ev:
            key = f"level2/h{j}"
            row[f"l2_h{j}_s"] = ev[f"{key}/horizon_s"]
            row[f"l2_h{j}_skill"] = ev[f"{key}/skill"]
            row[f"l2_h{j}_noise_skill"] = ev.get(f"control_noise/{key}/skill")
            row[f"l2_h{j}_mrr"] = ev.get(f"{key}/retrieval_mrr")
            row[f"copy_h{j}_mrr"] = ev.get(f"{key}/copy_retrieval_mrr")
            row[f"l1roll_h{j}_mrr"] = ev.get(f"{key}/level1_rollout_retrieval_mrr")
            j += 1
        row["l1_h1_skill"] = ev.get("level1/h1/skill")
        row["l2_train_skill"], row["l2_val_skill"] = fit_gap(run / "pretrain" / "csv" / "metrics.csv", 2)
        out = run / "anticipate"  # one folder for every head seed: the features are computed once, then cached
        for head_seed in args.head_seeds:
            kept = run / f"anticipate_head{head_seed}.json"
            if not kept.is_file():
                hjepa("anticipate", *world["anticipate"], "--ckpt", str(ckpt), "--out_dir", str(out),
                      "--seed", str(head_seed), "--ablation", "true")
                kept.write_text((out / "summary.json").read_text())
            an = json.loads(kept.read_text())
            for head in HEADS:
                for metric in ("action_top1", "action_recall5"):
                    row.setdefault(f"{head}/{metric}", []).append(an.get(f"ablation/{head}/{metric}"))
            row.setdefault("prior/action_top1", []).append(prior_top1(*world["annotations"](out)))
            row.setdefault("prior/action_recall5", []).append(an.get("prior_action_recall5"))
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        (work / f"study_{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
        if done is not None:
            done(rows)
    return rows


def mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def spread(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{statistics.fmean(vals):.3f} ± {statistics.stdev(vals):.3f}"


def minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.0f} min"


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| world | seed | level 2 ahead | L2 skill | L2 skill, noise | L2 skill in pretraining: train / val "
             f"| L2 MRR | L1 rolled out MRR | copy MRR "
             f"| top-1 L1 | top-1 {FULL} | recall@5 L1 | recall@5 {FULL} | prior top-1 | prior recall@5 | pretraining |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in rows:
        j = max(int(k.split("_h")[1].split("_")[0]) for k in r if k.startswith("l2_h"))
        lines.append(
            f"| {r['world']} | {r['seed']} | {r[f'l2_h{j}_s']:.1f} s | {f(r[f'l2_h{j}_skill'])} "
            f"| {f(r[f'l2_h{j}_noise_skill'])} | {f(r['l2_train_skill'])} / {f(r['l2_val_skill'])} "
            f"| {f(r[f'l2_h{j}_mrr'])} | {f(r[f'l1roll_h{j}_mrr'])} "
            f"| {f(r[f'copy_h{j}_mrr'])} | {spread(r['L1/action_top1'])} | {spread(r[f'{FULL}/action_top1'])} "
            f"| {spread(r['L1/action_recall5'])} | {spread(r[f'{FULL}/action_recall5'])} "
            f"| {spread(r['prior/action_top1'])} | {spread(r['prior/action_recall5'])} | {minutes(r['pretrain_s'])} |")
    for world in sorted({r["world"] for r in rows}):
        rs = [r for r in rows if r["world"] == world]
        j = max(int(k.split("_h")[1].split("_")[0]) for k in rs[0] if k.startswith("l2_h"))
        pool = lambda key: [mean(r[key]) if isinstance(r[key], list) else r[key] for r in rs]  # noqa: E731
        lines.append(
            f"| **{world}, mean over {len(rs)} seeds** | | {rs[0][f'l2_h{j}_s']:.1f} s | {spread(pool(f'l2_h{j}_skill'))} "
            f"| {spread(pool(f'l2_h{j}_noise_skill'))} | {spread(pool('l2_train_skill'))} / {spread(pool('l2_val_skill'))} "
            f"| {spread(pool(f'l2_h{j}_mrr'))} "
            f"| {spread(pool(f'l1roll_h{j}_mrr'))} | {spread(pool(f'copy_h{j}_mrr'))} "
            f"| {spread(pool('L1/action_top1'))} | {spread(pool(f'{FULL}/action_top1'))} "
            f"| {spread(pool('L1/action_recall5'))} | {spread(pool(f'{FULL}/action_recall5'))} "
            f"| {spread(pool('prior/action_top1'))} | {spread(pool('prior/action_recall5'))} | |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/hierarchy.md")
    p.add_argument("--work", default="runs/hierarchy_study",
                   help="run folders (reused: a finished pretraining, its evaluation and each head seed's result are kept)")
    p.add_argument("--recipe", default="configs/pretrain/default.yaml")
    p.add_argument("--worlds", nargs="+", default=["synthetic", "babyai"])
    p.add_argument("--babyai", default=None, help="a folder written by datasets/babyai/make_dataset.py")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--head_seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None, help="pretraining steps (default: the recipe's)")
    args = p.parse_args()
    available = worlds(args.babyai)
    missing = [w for w in args.worlds if w not in available]
    if missing:
        p.error(f"world(s) {missing} need their data: --babyai DIR for babyai")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for w in args.worlds:
        # the table is rewritten after every pretraining seed: an interrupted study keeps its rows
        rows += run_world(w, available[w], args, work, done=lambda r: write_report(args, rows + r, t0))
    print("\n".join(write_report(args, rows, t0)))


def write_report(args: argparse.Namespace, rows: list[dict[str, Any]], t0: float) -> list[str]:
    """Write the Markdown table and the JSON of every figure; return the Markdown lines."""
    command = " ".join(["python", "tools/hierarchy_study.py", *sys.argv[1:]])
    lines = [f"# Does level 2 earn its keep? ({args.recipe})", "",
             f"`{command}` ({time.perf_counter() - t0:.0f} s for this invocation on this machine; runs kept in "
             "`--work` from earlier ones are not re-run, and each row's pretraining time is its own).", "",
             *table(rows), "",
             "Level 2's skill is against the best of copy-the-present, the per-(slot, token) mean and copy + "
             "offset on held-out clips (≤ 0 on noise clips). In pretraining: level 2's logged skill, the mean of its last 20 "
             "training-batch values against its last value on the validation clips. MRR ranks the true future among every step of the "
             "batch; level 1 rolled out is ranked the same way at level 2's horizon. Anticipation: frozen probe on "
             "held-out episodes, action (verb, noun) top-1 and class-mean recall@5, mean ± std over head seeds."]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    (Path(args.out).with_suffix(".json")).write_text(json.dumps(rows, indent=2) + "\n")
    return lines


if __name__ == "__main__":
    main()
