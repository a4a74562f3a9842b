"""Pretraining through the real CLI, Lightning Trainer and DataModule (synthetic data, CPU)."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

import hjepa
from hjepa.cli.pretrain import PretrainCLI, build_cli, fit, main
from hjepa.models.config import HJEPAConfig

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs" / "pretrain").glob("*.yaml"))

# Small and fast: 32x32 frames (a 2x2 patch grid), few videos, no wandb unless a test asks.
TINY = [
    "--logger.wandb=false",
    "--data.resolution=32",
    "--data.batch_size=4",
    "--data.synthetic.num_train_videos=24",
    "--data.synthetic.num_val_videos=8",
    "--data.synthetic.frames_per_video=48",
    "--trainer.limit_val_batches=1",
]


def run(tmp_path: Path, *args: str) -> dict:
    return main(["--run_dir", str(tmp_path), *TINY, *args])


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_fast_dev_run(tmp_path: Path, precision: str) -> None:
    summary = run(tmp_path, "--trainer.fast_dev_run=true", f"--trainer.precision={precision}")
    assert summary["steps"] == 1
    assert math.isfinite(summary["loss_final"])


def test_short_default_run_lowers_the_loss_and_writes_its_outputs(tmp_path: Path) -> None:
    summary = run(tmp_path, "--trainer.max_steps=40", "--checkpoint_every=20")
    assert summary["steps"] == 40
    assert summary["loss_final"] < 0.8 * summary["loss_first"], summary
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["steps"] == 40
    numbers = {k: v for k, v in on_disk.items() if isinstance(v, (int, float))}
    assert numbers and all(math.isfinite(v) for v in numbers.values())
    for key in ("level1/eff_rank_final", "level1/copy_ratio_final", "level2/loss_final", "skipped_videos", "clips_per_s"):
        assert key in on_disk
    assert on_disk["skipped_videos"] == 0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "checkpoints" / "step000020.ckpt").is_file()
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "provenance.json").is_file()
    assert Path(on_disk["metrics_csv"]).is_file()
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hjepa"]["git_revision"]
    model = hjepa.load_pretrained(tmp_path / "checkpoints" / "last.ckpt")
    assert model.config == HJEPAConfig.from_dict(ckpt["hjepa"]["model_config"])


class _CaptureStart(L.Callback):
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.step = trainer.global_step
        self.optimizer = copy.deepcopy(trainer.optimizers[0].state_dict())  # later steps mutate it in place
        self.weights = {k: v.clone() for k, v in pl_module.state_dict().items()}


def test_resume_continues_from_the_saved_step_with_the_same_optimizer_state(tmp_path: Path) -> None:
    run(tmp_path, "--trainer.max_steps=6")
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    cli = build_cli(["--run_dir", str(tmp_path), *TINY, "--trainer.max_steps=9", "--ckpt_path=last"])
    capture = _CaptureStart()
    cli.trainer.callbacks.append(capture)
    summary = fit(cli)
    assert capture.step == 6
    assert summary["steps"] == 9
    for key, value in saved["state_dict"].items():
        assert torch.equal(capture.weights[key], value), key
    saved_state = saved["optimizer_states"][0]["state"]
    assert saved_state, "the checkpoint holds no optimizer state"
    for pid, state in saved_state.items():
        for name, tensor in state.items():
            assert torch.equal(capture.optimizer["state"][pid][name], tensor), (pid, name)


def test_resume_with_another_model_config_is_refused_naming_the_key(tmp_path: Path) -> None:
    run(tmp_path, "--trainer.max_steps=2")
    cli = build_cli(["--run_dir", str(tmp_path), *TINY, "--trainer.max_steps=4", "--ckpt_path=last",
                     "--model.arch.loss=mse"])
    with pytest.raises(ValueError, match="loss: checkpoint 'l1' vs current 'mse'"):
        fit(cli)


def test_a_run_killed_while_saving_leaves_a_loadable_last_checkpoint(tmp_path: Path) -> None:
    run(tmp_path, "--trainer.max_steps=2")
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    # A separate process rewrites last.ckpt (made slow by a 400 MB extra tensor) and is killed mid-write.
    script = (
        "import torch, sys\n"
        "from hjepa.train.checkpoint_io import AtomicCheckpointIO\n"
        f"ckpt = torch.load({str(last)!r}, weights_only=True)\n"
        "ckpt['padding'] = torch.zeros(100_000_000)\n"
        "print('saving', flush=True)\n"
        f"AtomicCheckpointIO().save_checkpoint(ckpt, {str(last)!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "saving"
    deadline = time.time() + 60
    while not list(last.parent.glob(".last.ckpt.tmp-*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    assert list(last.parent.glob(".last.ckpt.tmp-*")), "the writer never started its temporary file"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.read_bytes() == before
    hjepa.load_pretrained(last)  # loads: the kill left the old file whole


def test_unknown_or_misspelt_config_keys_fail_with_their_name(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--run_dir", str(tmp_path), "--model.arch.encoder.nmae=tiny"])
    assert "nmae" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  arch:\n    levels:\n      - {horizn: 2}\n")
    with pytest.raises((SystemExit, ValueError)) as err:
        main(["--run_dir", str(tmp_path), "--config", str(bad)])
    assert "horizn" in (str(err.value) + capsys.readouterr().err)
    with pytest.raises((SystemExit, ValueError)) as err:
        main(["--run_dir", str(tmp_path), "--data.frame_step=2", "--data.target_fps=4"])
    assert "target_fps" in (str(err.value) + capsys.readouterr().err)


class _ParseOnly(PretrainCLI):
    def instantiate_classes(self) -> None:  # validate the config, build nothing
        pass


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_pretrain_config_instantiates(path: Path) -> None:
    cli = build_cli(["--config", str(path)], cli_class=_ParseOnly)
    arch = cli.config.model.arch.as_dict() if hasattr(cli.config.model.arch, "as_dict") else cli.config.model.arch
    cfg = HJEPAConfig.from_dict(yaml.safe_load(yaml.safe_dump(arch)))
    cfg.encoder.pretrained = None  # the V-JEPA 2 recipe takes the user's weights path
    with torch.device("meta"):  # GPU-sized models: build the modules without allocating memory
        model = hjepa.HJEPA(cfg)
    data = cli.config.data
    clip_frames = data.num_windows * cfg.frames_per_window
    assert clip_frames >= cfg.min_frames(), f"{path.name}: clips of {clip_frames} frames are too short"
    assert data.resolution % cfg.encoder.patch_size == 0
    assert sum(p.numel() for p in model.parameters()) > 0


def test_no_argument_defaults_equal_the_default_yaml() -> None:
    defaults = build_cli([], cli_class=_ParseOnly).config
    from_yaml = build_cli(["--config", str(REPO / "configs/pretrain/default.yaml")], cli_class=_ParseOnly).config
    for key in ("model", "data", "trainer", "seed_everything"):
        assert defaults.as_dict()[key] == from_yaml.as_dict()[key], key


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HJEPA_RUN_DIR", None)
    env["PYTHONWARNINGS"] = "ignore"
    return env


def test_ddp_over_two_cpu_processes_splits_the_data(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "hjepa.cli.main", "pretrain", "--run_dir", str(tmp_path), *TINY,
           "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
           "--trainer.max_steps=3", "--trainer.limit_val_batches=0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_cli_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    seen = [set(map(int, (tmp_path / f"seen_video_index.rank{r}.txt").read_text().split())) for r in (0, 1)]
    assert seen[0] and seen[1]
    assert not seen[0] & seen[1], f"both ranks trained on the same videos: {seen[0] & seen[1]}"


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root and unshare -n")
def test_wandb_offline_works_without_network_or_login(tmp_path: Path) -> None:
    env = _cli_env()
    env["WANDB_API_KEY"] = ""
    env["HOME"] = str(tmp_path)  # no ~/.netrc login either
    args = [a for a in TINY if not a.startswith("--logger.wandb")]
    cmd = ["unshare", "-n", sys.executable, "-m", "hjepa.cli.main", "pretrain", "--run_dir", str(tmp_path / "run"),
           *args, "--trainer.max_steps=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert runs, "no offline wandb run folder"
    assert list(runs[0].glob("*.wandb")), "the offline run recorded nothing"


def _manifest_with_bad_files(tmp_path: Path, num_bad: int, num_good: int = 2) -> Path:
    from hjepa.data.synthetic import SyntheticConfig, write_synthetic_dataset

    rows = []
    if num_good:
        write_synthetic_dataset(tmp_path / "syn", SyntheticConfig(num_train_videos=num_good, num_val_videos=0,
                                                                  frames_per_video=48, resolution=32))
        rows = [str(tmp_path / "syn" / line.split(",")[0])
                for line in (tmp_path / "syn" / "manifest_train.csv").read_text().splitlines()[1:]]
    bad = [tmp_path / "empty.mp4", tmp_path / "noise.mp4", tmp_path / "missing.mp4"][:num_bad]
    if num_bad > 0:
        bad[0].write_bytes(b"")
    if num_bad > 1:
        bad[1].write_bytes(torch.randint(0, 256, (5000,), dtype=torch.uint8).numpy().tobytes())
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path\n" + "\n".join(rows + [str(b) for b in bad]) + "\n")
    return manifest


def test_unreadable_videos_are_skipped_and_counted_in_summary(tmp_path: Path) -> None:
    manifest = _manifest_with_bad_files(tmp_path, num_bad=3)
    summary = main(["--run_dir", str(tmp_path / "run"), "--logger.wandb=false", "--trainer.max_steps=2",
                    "--data.train_manifests", str(manifest), "--data.resolution=32", "--data.batch_size=2",
                    "--data.num_windows=4"])
    assert summary["steps"] == 2
    assert summary["skipped_videos"] == 3
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["skipped_videos"] == 3


def test_a_run_where_every_input_is_bad_stops_at_once_with_a_clear_error(tmp_path: Path) -> None:
    manifest = _manifest_with_bad_files(tmp_path, num_bad=3, num_good=0)
    with pytest.raises(Exception, match="(?i)all|every|no readable") as err:
        main(["--run_dir", str(tmp_path / "run"), "--logger.wandb=false", "--trainer.max_steps=2",
              "--data.train_manifests", str(manifest), "--data.resolution=32", "--data.batch_size=2"])
    assert "3" in str(err.value)
