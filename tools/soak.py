"""Soak test: the default pretraining for many steps, with the memory it holds at every checkpoint.

    python tools/soak.py                                   # 5000 steps, a checkpoint every 500
    python tools/soak.py --steps 200 --every 50            # a short check
    python tools/soak.py --steps 5000 -- --data.num_workers=2   # anything after -- goes to hjepa pretrain

It runs ``hjepa pretrain`` (the real CLI, Trainer and data; the default config unless options
after ``--`` say otherwise) with ``--trainer.max_steps=STEPS --checkpoint_every=EVERY`` and, at
every checkpoint step, reads the resident memory (RSS, from ``/proc``) of the training process
and of its children (loader workers). It prints one line per checkpoint and writes
``<run_dir>/soak.json``: ``rows`` (step, rss_mb, children_rss_mb, seconds), ``rss_growth_pct``
(last checkpoint against the first; a leak shows as steady growth, and the bar is 5 %) and the
run's ``summary``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L

from hjepa.cli.pretrain import build_cli, fit


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def children_rss_mb() -> float:
    """Summed RSS of this process's direct children (the loader workers, wandb's service)."""
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except FileNotFoundError:
            continue
        total += sum(rss_mb(pid) for pid in pids)
    return total


class RSSAtCheckpoints(L.Callback):
    """Records the RSS at every ``every``-th optimizer step (the checkpoint steps)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.rows: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step % self.every == 0 and (not self.rows or self.rows[-1]["step"] != step):
            row = {"step": step, "rss_mb": round(rss_mb(), 1), "children_rss_mb": round(children_rss_mb(), 1),
                   "seconds": round(time.perf_counter() - self.t0, 1)}
            self.rows.append(row)
            print(f"soak: step {step:>6}  RSS {row['rss_mb']:8.1f} MB  workers {row['children_rss_mb']:8.1f} MB  "
                  f"{row['seconds']:8.1f} s", flush=True)


def growth_pct(rows: list[dict[str, Any]]) -> float | None:
    """RSS at the last checkpoint against the first, in %."""
    if len(rows) < 2 or rows[0]["rss_mb"] <= 0:
        return None
    return round(100.0 * (rows[-1]["rss_mb"] - rows[0]["rss_mb"]) / rows[0]["rss_mb"], 2)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="tools/soak.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5000, help="optimizer steps (default 5000)")
    parser.add_argument("--every", type=int, default=500, help="checkpoint (and RSS reading) every N steps")
    parser.add_argument("--run_dir", default=None, help="run folder (default runs/soak/<date-time>)")
    args = parser.parse_args(own)
    if args.steps < 1 or args.every < 1:
        parser.error("--steps and --every must be >= 1")
    run_dir = Path(args.run_dir or Path("runs/soak") / time.strftime("%Y%m%d-%H%M%S"))
    cli = build_cli(["--run_dir", str(run_dir), f"--trainer.max_steps={args.steps}",
                     f"--checkpoint_every={args.every}", *extra])
    probe = RSSAtCheckpoints(args.every)
    cli.trainer.callbacks.append(probe)
    summary = fit(cli)
    report = {"steps": args.steps, "every": args.every, "rows": probe.rows, "rss_growth_pct": growth_pct(probe.rows),
              "pid": os.getpid(), "summary": summary}
    (run_dir / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"soak: RSS growth after the first checkpoint: {report['rss_growth_pct']} %  ({run_dir / 'soak.json'})")
    return report


if __name__ == "__main__":
    main()
