#!/usr/bin/env python
"""Does the hierarchy plan better? Flat against hierarchical MPC in BabyAI, over training seeds.

For every pretraining seed it runs the three jobs a user would:

1. ``hjepa pretrain --config configs/pretrain/babyai_actions.yaml`` on a BabyAI recording with
   actions (``--data``: ``datasets/babyai/make_dataset.py --explore 0.1 --no-highlight``), seed s;
2. ``hjepa evaluate`` of that checkpoint on the recording's test episodes, with their actions and
   the controls (skill against the simple baselines; the same with another clip's actions);
3. ``hjepa plan --config configs/plan/babyai.yaml`` with that checkpoint on goals from the test
   episodes of ``--goals`` (the same goals for every seed): flat (level 1 alone), hierarchical
   (level 2 subgoals, level 1 actions; as many imagined plans per step) and random actions.

It writes a Markdown table (per seed, then mean ± spread over seeds) and a JSON of every figure,
and says whether the bars the planning issue set, fixed here before any run was read, are met:
on long goals hierarchical success >= 2x flat and >= 60 %; on short goals the hierarchy does not
hurt (hierarchical >= flat - 5 points). Pretrainings and plans that finished are reused, so a
study that was stopped resumes; the plans run ``--jobs`` at a time, one CPU thread each.

    python tools/planning_study.py --data data/babyai_actions --goals data/babyai --out docs/planning_babyai.md
    python tools/planning_study.py --data data/babyai_actions --goals data/babyai --seeds 0 --episodes 2 \\
        --out /tmp/p.md --runs /tmp/planning_study

A pretraining takes minutes on 2 CPU cores and a plan tens of minutes on one; the table states
the wall time of each plan it reports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLANNERS = ("flat", "hierarchical", "random")
SETS = ("short", "long")
LONG_RATIO, LONG_ABSOLUTE, SHORT_TOLERANCE = 2.0, 0.6, 0.05  # the bars, set before any run


def hjepa_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hjepa.cli.main", *args]


def pretrain(data: Path, run: Path, seed: int, steps: int | None) -> Path:
    """The action recipe on ``data``, seed ``seed``; reused when it already finished."""
    ckpt = run / "checkpoints" / "last.ckpt"
    if (run / "summary.json").is_file() and ckpt.is_file():
        print(f"reusing {ckpt}", flush=True)
        return ckpt
    args = ["pretrain", "--config", "configs/pretrain/babyai_actions.yaml", "--run_dir", str(run),
            "--seed_everything", str(seed), "--logger.wandb=false"]
    for split in ("train", "val"):
        args += [f"--data.{split}_manifests", str(data / f"manifest_{split}.csv"),
                 f"--data.{split}_actions", str(data / f"frame_actions_{split}.csv")]
    if steps:
        args += ["--trainer.max_steps", str(steps)]
    print("$ hjepa " + " ".join(args), flush=True)
    subprocess.run(hjepa_cmd(*args), check=True, cwd=REPO)
    return ckpt


def evaluate(ckpt: Path, data: Path, out: Path) -> dict:
    """``hjepa evaluate`` on the recording's test episodes with their actions and the controls:
    does each level predict better than the simple baselines, and do its actions matter (the
    ``control_actions`` skill, with another clip's actions, must fall below it)? Reused when done."""
    path = out / "summary.json"
    if not path.is_file():
        args = ["evaluate", "--ckpt", str(ckpt), "--data", str(data / "manifest_test.csv"), "--actions",
                str(data / "frame_actions_test.csv"), "--controls", "true", "--probes", "false",
                "--clips_per_video", "2", "--out_dir", str(out)]
        print("$ hjepa " + " ".join(args), flush=True)
        subprocess.run(hjepa_cmd(*args), check=True, cwd=REPO)
    return json.loads(path.read_text())


def plan_args(ckpt: Path, goals: Path, out: Path, episodes: int) -> list[str]:
    return ["plan", "--config", "configs/plan/babyai.yaml", "--ckpt", str(ckpt), "--data_dir", str(goals),
            "--out_dir", str(out), "--episodes", str(episodes), "--cpu_threads", "1"]


def plan_done(out: Path, episodes: int) -> bool:
    """A finished plan of as many goals per set: reused, as a finished pretraining is."""
    path = out / "summary.json"
    if not path.is_file():
        return False
    summary = json.loads(path.read_text())
    done = summary.get("episodes/short") == summary.get("episodes/long") == episodes
    if done:
        print(f"reusing {path}", flush=True)
    return done


def run_plans(jobs: list[list[str]], parallel: int) -> None:
    """Run the ``hjepa plan`` commands, ``parallel`` at a time; stop on the first failure."""
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < parallel:
            args = pending.pop(0)
            print("$ hjepa " + " ".join(args), flush=True)
            running.append((args, subprocess.Popen(hjepa_cmd(*args), cwd=REPO)))
        time.sleep(2)
        for job in list(running):
            if job[1].poll() is not None:
                running.remove(job)
                if job[1].returncode:
                    raise SystemExit(f"failed ({job[1].returncode}): hjepa {' '.join(job[0])}")


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}"


def verdict(mean: dict[str, float]) -> dict[str, bool]:
    flat_l, hier_l = mean["flat/long"], mean["hierarchical/long"]
    return {
        "long: hierarchical >= 2x flat": hier_l >= LONG_RATIO * flat_l and hier_l > 0,
        "long: hierarchical >= 60 %": hier_l >= LONG_ABSOLUTE,
        "short: hierarchical >= flat - 5 points": mean["hierarchical/short"] >= mean["flat/short"] - SHORT_TOLERANCE,
    }


def report(summaries: dict[int, dict], evals: dict[int, dict], args: argparse.Namespace,
           wall_s: float) -> tuple[str, dict]:
    keys = [f"{p}/{s}" for p in PLANNERS for s in SETS]
    # A checkpoint without macro-actions has no hierarchical rates: those cells read nan.
    per_seed = {seed: {k: summ.get(f"success_rate/{k}", float("nan")) for k in keys} for seed, summ in summaries.items()}
    mean = {k: statistics.fmean(v[k] for v in per_seed.values()) for k in keys}
    checks = verdict(mean)
    first = next(iter(summaries.values()))
    lines = [
        "# Planning in BabyAI: flat against hierarchical MPC",
        "",
        (f"Written by `python tools/planning_study.py {' '.join(sys.argv[1:])}` ({wall_s / 60:.0f} min for what it "
        f"ran itself). Per seed, the plan took {spread([x['wall_time_s'] / 60 for x in summaries.values()])} min "
        "on one CPU thread (a pretraining about 7-10 min on 2 cores)."),
        "",
        (f"Recording `{args.data}` (`configs/pretrain/babyai_actions.yaml`, one pretraining per seed); goals from "
        f"the test episodes of `{args.goals}`, {first['episodes/short']} short "
        f"(mean {first['goal_steps_mean/short']:.1f} bot steps away) and {first['episodes/long']} long "
        f"(mean {first['goal_steps_mean/long']:.1f}), the same for every seed; `configs/plan/babyai.yaml`: "
        f"{first['planner']}, {first['imagined_plans_per_step']} imagined plans per step for both planners; "
        "an episode succeeds when the agent stands on the goal's cell facing its way within 2k + 10 steps."),
        "",
        "Success rate per pretraining seed:",
        "",
        "| seed | " + " | ".join(keys) + " | s/step flat | s/step hierarchical |",
        "| --- | " + " | ".join("---:" for _ in keys) + " | ---: | ---: |",
    ]
    for seed, row in per_seed.items():
        summ = summaries[seed]
        lines.append(f"| {seed} | " + " | ".join(f"{row[k]:.2f}" for k in keys)
                     + "".join(f" | {summ.get(f'planning_s_per_step/{n}', float('nan')):.2f}" for n in PLANNERS[:2]) + " |")
    lines.append("| mean ± sd | " + " | ".join(spread([r[k] for r in per_seed.values()]) for k in keys) + " | | |")
    spaces = [f"{space}/{goals}" for space in ("pixels", "level1", "level2") for goals in SETS]
    lines += ["", ("Does the cost know the way? `cost_progress` (minus Kendall's tau between the step and the "
              "distance to the goal along the bot's path to it: 1 when it falls at every step, 0 when unrelated):"),
              "", "| seed | " + " | ".join(spaces) + " |", "| --- | " + " | ".join("---:" for _ in spaces) + " |"]
    for seed, summ in summaries.items():
        lines.append(f"| {seed} | " + " | ".join(f"{summ[f'cost_progress/{k}']:.2f}" if f"cost_progress/{k}" in summ
                                                  else "-" for k in spaces) + " |")
    cols = [("level1/h1", "L1 0.25 s"), ("level1/h2", "L1 0.5 s"), ("level2/h1", "L2 1 s"), ("level2/h2", "L2 2 s")]
    lines += ["", (f"The world model on the test episodes of `{args.data}` (`hjepa evaluate --actions ... --controls "
              "true`): skill against the best simple baseline with the clip's own actions / with another clip's "
              "(where action conditioning counts, the second is lower):"), "",
              "| seed | " + " | ".join(name for _, name in cols) + " |", "| --- | " + " | ".join("---:" for _ in cols) + " |"]
    for seed, ev in evals.items():
        lines.append(f"| {seed} | " + " | ".join(
            f"{ev[f'{k}/skill']:.3f} / {ev[f'control_actions/{k}/skill']:.3f}"
            if f"{k}/skill" in ev and f"control_actions/{k}/skill" in ev else "-"
            for k, _ in cols) + " |")
    lines += ["", "The bars (fixed before the runs):", ""]
    lines += [f"- {name}: {'met' if ok else 'not met'}" for name, ok in checks.items()]
    record = {"command": sys.argv, "per_seed": per_seed, "mean": mean, "checks": checks,
              "summaries": {str(s): summ for s, summ in summaries.items()},
              "evaluate": {str(s): ev for s, ev in evals.items()}}
    return "\n".join(lines) + "\n", record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="BabyAI recording with actions to pretrain on")
    p.add_argument("--goals", type=Path, required=True, help="BabyAI recording whose test episodes give the goals")
    p.add_argument("--out", type=Path, required=True, help="Markdown table (the JSON goes beside it)")
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "planning_study", help="pretraining and plan runs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="pretraining seeds")
    p.add_argument("--episodes", type=int, default=20, help="goals per set (short, long)")
    p.add_argument("--steps", type=int, default=None, help="pretraining steps (default: the recipe's)")
    p.add_argument("--jobs", type=int, default=2, help="plans run side by side")
    args = p.parse_args(argv)
    for name, folder, needed in (("--data", args.data, "frame_actions_train.csv"), ("--goals", args.goals, "episodes.csv")):
        if not (folder / needed).is_file():
            p.error(f"{name} {folder}: no {needed} there; make it with datasets/babyai/make_dataset.py")
    t0 = time.perf_counter()
    ckpts = {s: pretrain(args.data, args.runs / f"pretrain_seed{s}", s, args.steps) for s in args.seeds}
    outs = {s: args.runs / f"plan_seed{s}" for s in args.seeds}
    todo = [s for s in args.seeds if not plan_done(outs[s], args.episodes)]
    run_plans([plan_args(ckpts[s], args.goals, outs[s], args.episodes) for s in todo], args.jobs)
    summaries = {s: json.loads((outs[s] / "summary.json").read_text()) for s in args.seeds}
    evals = {s: evaluate(ckpts[s], args.data, args.runs / f"evaluate_seed{s}") for s in args.seeds}
    text, record = report(summaries, evals, args, time.perf_counter() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
