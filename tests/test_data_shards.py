"""Streaming shards: the shared clips written by ``hjepa shard`` and trained on with ``--data.shards``."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train_resume import (
    _env,
    _max_abs_diff,
    _start_and_kill_after_first_checkpoint,
)

from hjepa.cli.main import main as hjepa_main
from hjepa.cli.pretrain import main as pretrain
from hjepa.data.manifests import scan_folder, write_csv_manifest
from hjepa.data.shards import ShardError
from hjepa.train.datamodule import VideoDataModule

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
VIDEOS, CORRUPT = SHARED / "videos", SHARED / "corrupt"
pytestmark = pytest.mark.skipif(not VIDEOS.is_dir(), reason="needs ../shared/data/videos")


def _manifest(tmp_path: Path, rows) -> Path:
    path = tmp_path / "manifest.csv"
    write_csv_manifest(path, rows, relative=False)
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, int]:
    """All the shared clips in shards of about 2 MB (several chunks, so workers split them)."""
    tmp = tmp_path_factory.mktemp("shards")
    rows = scan_folder(VIDEOS)[0]
    method = multiprocessing.get_start_method(allow_none=True)
    hjepa_main(["shard", "--manifest", str(_manifest(tmp, rows)), "--out", str(tmp / "out"), "--chunk_bytes", "2MB"])
    # litdata's writer sets the process-wide start method; hjepa puts the caller's back, so later
    # DataLoaders start their workers as before.
    assert multiprocessing.get_start_method(allow_none=True) == method
    return tmp / "out", len(rows)


def test_twenty_steps_from_shards_with_two_workers_see_every_clip_once_per_epoch(tmp_path: Path, shards) -> None:
    out, n = shards
    assert len(list(out.glob("*.bin"))) >= 4
    batch = 4
    assert n % (2 * batch) == 0, "the check below wants whole batches in each of the two workers"
    summary = pretrain(["--run_dir", str(tmp_path / "run"), "--logger.wandb=false", f"--data.shards={out}",
                        "--data.num_workers=2", f"--data.batch_size={batch}", "--data.resolution=32",
                        "--trainer.max_steps=20", "--trainer.limit_val_batches=0"])
    assert summary["steps"] == 20 and summary["skipped_videos"] == 0
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    seen = ckpt["hjepa_resume"]["seen_video_index"].tolist()
    assert len(seen) == 20 * batch
    epochs = len(seen) // n
    assert epochs >= 2
    for e in range(epochs):
        assert sorted(seen[e * n:(e + 1) * n]) == list(range(n)), f"epoch {e}"
    assert seen[:n] != seen[n:2 * n]  # reshuffled each epoch
    settings = ckpt["hjepa"]["input_settings"]
    assert settings["source_fps"] and settings["source_fps"] > 0  # read from the shard items


def _shard_args(out: Path, steps: int, every: int) -> list[str]:
    # 24 clips in batches of 4 split over 2 workers: 6 batches an epoch. A checkpoint every 4
    # steps: the kill falls back to step 4, mid-epoch 0; resumed, the run crosses into epoch 1.
    return ["--logger.wandb=false", f"--data.shards={out}", "--data.num_workers=2", "--data.batch_size=4",
            "--data.resolution=32", f"--trainer.max_steps={steps}", f"--checkpoint_every={every}",
            "--trainer.limit_val_batches=0", "--trainer.log_every_n_steps=1", "--trainer.enable_progress_bar=false"]


def test_a_shard_run_killed_mid_epoch_and_resumed_ends_bit_identical(tmp_path: Path, shards) -> None:
    out, n = shards
    steps, every = 8, 4
    args = _shard_args(out, steps, every)
    reference = pretrain(["--run_dir", str(tmp_path / "uninterrupted"), *args])
    assert reference["steps"] == steps
    killed = tmp_path / "killed"
    step = _start_and_kill_after_first_checkpoint(killed, args, every)
    assert step == every and (step * 4) % n != 0, "the checkpoint resumed from must be mid-epoch"
    resumed = pretrain(["--run_dir", str(killed), *args, "--ckpt_path=last"])
    assert resumed["steps"] == steps
    a = torch.load(tmp_path / "uninterrupted" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    diff = _max_abs_diff(a["state_dict"], b["state_dict"])
    print(f"shards kill-and-resume max abs weight difference: {diff}")
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), (key, diff)
    for i, state in a["optimizer_states"][0]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer_states"][0]["state"][i][name]), (i, name)
    # the same clips in the same order, the killed run's first steps and the resumed run's rest
    assert torch.equal(a["hjepa_resume"]["seen_video_index"], b["hjepa_resume"]["seen_video_index"])


@pytest.mark.slow
def test_ddp_ranks_read_distinct_shard_samples_and_cover_each_epoch(tmp_path: Path, shards) -> None:
    """Two CPU processes (gloo) on the shards: per epoch the ranks' clips are disjoint and cover all."""
    out, n = shards
    batch, steps = 2, 12  # per rank: 24 clips / 2 ranks / 2 workers -> 3 batches a worker, 6 a rank
    cmd = [sys.executable, "-m", "hjepa.cli.main", "pretrain", "--run_dir", str(tmp_path / "run"),
           "--logger.wandb=false", f"--data.shards={out}", "--data.num_workers=2", f"--data.batch_size={batch}",
           "--data.resolution=32", f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0",
           "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
    proc = subprocess.run(cmd, check=False, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    seen = [[int(i) for i in (tmp_path / "run" / f"seen_video_index.rank{r}.txt").read_text().split()]
            for r in (0, 1)]
    per_rank_epoch = n // 2
    assert all(len(s) == steps * batch for s in seen)
    for e in range(len(seen[0]) // per_rank_epoch):
        r0, r1 = (set(s[e * per_rank_epoch:(e + 1) * per_rank_epoch]) for s in seen)
        assert not r0 & r1, f"epoch {e}: both ranks read {sorted(r0 & r1)}"
        assert r0 | r1 == set(range(n)), f"epoch {e}: clips never read {sorted(set(range(n)) - (r0 | r1))}"


def test_a_resumed_shard_loader_continues_with_the_same_samples(shards) -> None:
    out, _ = shards

    def loader():
        dm = VideoDataModule(shards=str(out), batch_size=2, num_workers=2, resolution=32, num_windows=2)
        dm.setup()
        return dm.train_dataloader()

    full = [b for _, b in zip(range(6), iter(loader()))]
    first = loader()
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    resumed = loader()
    resumed.load_state_dict(state)
    rest = [b for _, b in zip(range(3), iter(resumed))]
    for a, b in zip(full[3:], rest):
        assert torch.equal(a["video_index"], b["video_index"])
        assert torch.equal(a["clip"], b["clip"])  # same frames, crops and flips: per-sample seeds


def test_a_bad_video_inside_a_shard_is_skipped_and_counted(tmp_path: Path) -> None:
    good = scan_folder(VIDEOS)[0][:3]
    bad = scan_folder(CORRUPT)[0][:1]
    out = tmp_path / "out"
    hjepa_main(["shard", "--manifest", str(_manifest(tmp_path, good + bad)), "--out", str(out)])
    dm = VideoDataModule(shards=str(out), batch_size=2, num_workers=0, resolution=32, num_windows=2, drop_last=False)
    dm.setup()
    seen = []
    for b in dm.train_dataloader():
        dm.record_batch(b)
        seen += b["video_index"].tolist()
    report = dm.skip_report()
    assert report["skipped_videos"] == 1 and report["skipped_files"] == [bad[0].path]
    assert sorted(seen) == [0, 1, 2]


def test_shards_never_unpickle(tmp_path: Path, shards) -> None:
    out, _ = shards
    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    index = json.loads((tampered / "index.json").read_text())
    fmt = index["config"]["data_format"]
    fmt[fmt.index("int")] = "pickle"  # the label field, as a pickle: would run code on read
    (tampered / "index.json").write_text(json.dumps(index))
    dm = VideoDataModule(shards=str(tampered), batch_size=2, num_workers=0, resolution=32, num_windows=2)
    dm.setup()
    with pytest.raises(ShardError, match="never unpickles"):
        next(iter(dm.train_dataloader()))


def test_shard_errors_are_one_line(tmp_path: Path, capsys) -> None:
    rc = hjepa_main(["pretrain", "--run_dir", str(tmp_path / "r"), "--logger.wandb=false",
                     f"--data.shards={tmp_path / 'nothing'}", "--trainer.max_steps=1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no shards here" in err and "hjepa shard" in err and "Traceback" not in err
