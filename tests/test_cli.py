"""The ``hjepa`` command: synth, export, benchmark, and the entry point itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hjepa
from hjepa.cli.main import main as hjepa_main
from hjepa.cli.pretrain import main as pretrain
from hjepa.data.readers import open_video


def test_usage_and_unknown_command(capsys) -> None:
    assert hjepa_main(["--help"]) == 0
    assert "pretrain" in capsys.readouterr().out
    assert hjepa_main(["pretrian"]) == 2
    assert "unknown command 'pretrian'" in capsys.readouterr().err


def test_synth_writes_videos_the_readers_decode(tmp_path: Path) -> None:
    hjepa_main(["synth", "--out", str(tmp_path), "--synthetic.num_train_videos=2", "--synthetic.num_val_videos=1",
                "--synthetic.frames_per_video=24"])
    rows = (tmp_path / "manifest_train.csv").read_text().splitlines()
    assert rows[0].startswith("path") and len(rows) == 3
    video = tmp_path / rows[1].split(",")[0]
    reader = open_video(video)
    assert reader.num_frames == 24
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_train_videos"] == 2
    header = (tmp_path / "annotations_train.csv").read_text().splitlines()[0]
    assert "verb_class" in header and "noun_class" in header and "start_frame" in header


def test_export_then_load_gives_bitwise_equal_outputs(tmp_path: Path) -> None:
    summary = pretrain(["--run_dir", str(tmp_path / "run"), "--logger.wandb=false", "--trainer.max_steps=2",
                        "--data.resolution=32", "--data.batch_size=2", "--data.synthetic.num_train_videos=4",
                        "--data.synthetic.num_val_videos=2", "--trainer.limit_val_batches=0"])
    hjepa_main(["export", "--ckpt", summary["checkpoint"], "--out", str(tmp_path / "export")])
    from_ckpt = hjepa.load_pretrained(summary["checkpoint"])
    from_export = hjepa.load_pretrained(tmp_path / "export")
    clip = torch.randn(1, 3, 32, 32, 32)
    for a, b in zip(from_ckpt.predict(clip), from_export.predict(clip)):
        assert torch.equal(a.pred, b.pred)
    # the export folder is read without Lightning
    code = ("import sys, hjepa; m = hjepa.load_pretrained(sys.argv[1]); "
            "assert 'lightning' not in sys.modules, 'lightning was imported'; print(m.num_levels)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "export")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"


def test_a_checkpoint_from_another_model_says_what_does_not_match(tmp_path: Path) -> None:
    summary = pretrain(["--run_dir", str(tmp_path), "--logger.wandb=false", "--trainer.max_steps=1",
                        "--data.resolution=32", "--data.batch_size=2", "--data.synthetic.num_train_videos=4",
                        "--data.synthetic.num_val_videos=2", "--trainer.limit_val_batches=0"])
    ckpt = torch.load(summary["checkpoint"], weights_only=True)
    ckpt["hjepa"]["model_config"]["levels"][1]["embed_dim"] = 64  # claims another width than its weights
    bad = tmp_path / "other.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(ValueError, match=r"mis-shaped keys.*levels\.1\..*checkpoint .* vs model"):
        hjepa.load_pretrained(bad)
    with pytest.raises(FileNotFoundError):
        hjepa.load_pretrained(tmp_path / "missing.ckpt")


def test_benchmark_reports_ours_beside_the_reference(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    hjepa_main(["benchmark", "--out", str(tmp_path), "--model", "micro", "--frames", "8", "--size", "32",
                "--batch", "1", "--steps", "1", "--windows", "[1, 2]", "--pipeline", "false", "--decoding", "false"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["train/ours_clips_per_s"] > 0 and summary["train/reference_clips_per_s"] > 0
    assert summary["train/speedup_vs_reference"] == pytest.approx(
        summary["train/reference_step_s"] / summary["train/ours_step_s"])
    for name in ("ours", "reference"):
        assert summary[f"train/{name}_gflop_per_clip"] > 0
        assert 0 < summary[f"train/{name}_mfu"] < 1
    assert 0 < summary["train/reference_context_fraction"] < 0.5  # V-JEPA's context: a minority of tokens
    assert summary["train/windows2_s_per_window"] == pytest.approx(summary["train/windows2_s_per_clip"] / 2)
