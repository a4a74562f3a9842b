"""Exact resume: a pretraining run killed with SIGKILL mid-epoch (loader workers running) and
resumed with ``--ckpt_path last`` ends where the uninterrupted run ends, bit for bit; and resume
never unpickles code."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hjepa.cli.pretrain import main
from hjepa.train.checkpoint_io import UnsafeCheckpoint

# 8 videos in batches of 2: 4 batches an epoch. A checkpoint every 3 steps puts the one the
# kill falls back to in the middle of epoch 1; resuming from it crosses the epoch's end (and
# its validation) and runs into epoch 2. Every step is logged, so every metric is compared.
STEPS, EVERY, BATCHES_PER_EPOCH = 6, 3, 4
ARGS = [
    "--logger.wandb=false", "--data.resolution=32", "--data.batch_size=2",
    "--data.synthetic.num_train_videos=8", "--data.synthetic.num_val_videos=4",
    "--data.synthetic.frames_per_video=48", "--trainer.limit_val_batches=1",
    f"--trainer.max_steps={STEPS}", f"--checkpoint_every={EVERY}", "--data.num_workers=2",
    "--trainer.log_every_n_steps=1", "--trainer.enable_progress_bar=false",
]
WALL_CLOCK = {"train/clips_per_s"}  # the one logged value that is a measurement of time


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("HJEPA_RUN_DIR", None)
    return env


def _start_and_kill_after_first_checkpoint(run_dir: Path, args: list[str] = ARGS, every: int = EVERY) -> int:
    """Start ``hjepa pretrain`` in a subprocess, SIGKILL it once its first checkpoint is on disk."""
    ckpts = run_dir / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-m", "hjepa.cli.main", "pretrain", "--run_dir", str(run_dir), *args],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while not ((ckpts / f"step{every:06d}.ckpt").is_file() and (ckpts / "last.ckpt").is_file()):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # a lost node: no handler, no flush, workers orphaned
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return int(torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"])


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in WALL_CLOCK} for row in csv.DictReader(f)]


def _max_abs_diff(a: dict, b: dict) -> float:
    diffs = [(x.double() - b[k].double()).abs().max().item() for k, x in a.items() if x.numel()]
    return max(diffs, default=0.0)


def test_a_run_killed_mid_epoch_and_resumed_ends_bit_identical(tmp_path: Path) -> None:
    reference = main(["--run_dir", str(tmp_path / "uninterrupted"), *ARGS])
    assert reference["steps"] == STEPS

    killed = tmp_path / "killed"
    step = _start_and_kill_after_first_checkpoint(killed)
    assert step == EVERY and step % BATCHES_PER_EPOCH != 0, "the checkpoint resumed from must be mid-epoch"
    resumed = main(["--run_dir", str(killed), *ARGS, "--ckpt_path=last"])
    assert resumed["steps"] == STEPS

    a = torch.load(tmp_path / "uninterrupted" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    weight_diff = _max_abs_diff(a["state_dict"], b["state_dict"])
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), (key, weight_diff)
    opt_a, opt_b = a["optimizer_states"][0], b["optimizer_states"][0]
    assert opt_a["state"].keys() == opt_b["state"].keys() and opt_a["state"]
    optim_diff = max(_max_abs_diff(s, opt_b["state"][i]) for i, s in opt_a["state"].items())
    for i, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(value, opt_b["state"][i][name]), (i, name, optim_diff)
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for key in ("state_dict", "optimizer_states", "callbacks", "loops", "global_step"):
        assert key in b
    # Every logged row, in order, once: the killed run's rows up to its checkpoint, then the resumed run's.
    rows_a, rows_b = _metrics(tmp_path / "uninterrupted"), _metrics(killed)
    assert len(rows_b) == len(rows_a)
    differ = sorted({(ra["step"], k) for ra, rb in zip(rows_a, rows_b) for k in ra if ra[k] != rb.get(k)})
    print(f"kill-and-resume max abs difference: weights {weight_diff}, optimizer state {optim_diff}")
    assert not differ, f"logged metrics differ after resume at (step, key): {differ[:12]}"
    # The summary covers the whole run, its first steps included (they ran before the kill).
    for key, value in reference.items():
        if key.endswith(("_first", "_final")) or key == "loss_first":
            assert resumed[key] == value, (key, resumed[key], value)


def test_resume_refuses_a_checkpoint_that_would_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "unpickling-ran-code"

    class CreatesAFile:
        def __reduce__(self):  # unpickling calls open(marker, "w"), which creates the file
            return (open, (str(marker), "w"))

    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6.0", "hjepa": {}, "x": CreatesAFile()}, last)
    with pytest.raises(UnsafeCheckpoint, match=r"refused to load.*could run code") as err:
        main(["--run_dir", str(tmp_path / "run"), *ARGS, "--data.num_workers=0", "--ckpt_path=last"])
    assert "open" in str(err.value)  # torch's refusal names the global it would have called
    assert not marker.exists(), "resume unpickled the tampered checkpoint"
    # The same file through plain pickle does create it: the test's checkpoint is a real threat.
    torch.load(last, weights_only=False)
    assert marker.exists()


DDP = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]


def _pretrain_process(run_dir: Path, *extra: str) -> subprocess.Popen:
    # Its own session: Lightning's DDP launcher starts the second rank as a child process, and a
    # lost node loses both, so the kill below goes to the whole group.
    return subprocess.Popen([sys.executable, "-m", "hjepa.cli.main", "pretrain", "--run_dir", str(run_dir), *ARGS,
                             *DDP, *extra], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


@pytest.mark.slow
def test_a_ddp_run_killed_and_resumed_ends_bit_identical(tmp_path: Path) -> None:
    """Two CPU processes (gloo): every rank's loader position and random state come back."""
    reference = _pretrain_process(tmp_path / "uninterrupted")
    assert reference.wait(timeout=900) == 0, reference.stderr.read().decode()[-3000:]

    killed = tmp_path / "killed"
    proc = _pretrain_process(killed)
    ckpts = killed / "checkpoints"
    deadline = time.time() + 900
    while not ((ckpts / f"step{EVERY:06d}.ckpt").is_file() and (ckpts / "last.ckpt").is_file()):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint within 15 minutes"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = _pretrain_process(killed, "--ckpt_path=last")
    assert resumed.wait(timeout=900) == 0, resumed.stderr.read().decode()[-3000:]

    a = torch.load(tmp_path / "uninterrupted" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(ckpts / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == STEPS
    diff = _max_abs_diff(a["state_dict"], b["state_dict"])
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), (key, diff)
    for rank in (0, 1):  # each rank trained on the same samples, in the same order
        name = f"seen_video_index.rank{rank}.txt"
        assert (tmp_path / "uninterrupted" / name).read_text() == (killed / name).read_text(), name
