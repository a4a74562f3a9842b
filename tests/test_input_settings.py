"""The one record of a model's input settings: written by pretraining, carried by export, used by every task."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

import hjepa
from hjepa.cli.main import main as hjepa_main
from hjepa.cli.pretrain import main as pretrain
from hjepa.input_settings import InputSettings


def test_fps_is_the_rate_the_model_saw() -> None:
    assert InputSettings(source_fps=8.0, frame_step=2).fps == 4.0
    assert InputSettings(source_fps=30.0, target_fps=6.0).fps == 6.0
    assert InputSettings().fps is None  # nothing known of the videos' rate


def test_a_video_of_another_rate_is_resampled_and_one_of_the_same_keeps_the_step() -> None:
    record = InputSettings(source_fps=8.0, frame_step=2)
    assert record.sampling_for(8.0) == {"frame_step": 2, "target_fps": None}
    assert record.sampling_for(30.0) == {"frame_step": None, "target_fps": 4.0}
    assert InputSettings(frame_step=3).sampling_for(30.0) == {"frame_step": 3, "target_fps": None}


def test_the_record_round_trips_and_refuses_unknown_keys() -> None:
    record = InputSettings(resolution=32, frame_step=2, source_fps=8.0, synthetic={"fps": 8.0})
    assert InputSettings.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    with pytest.raises(ValueError, match="unknown key.*frame_rate"):
        InputSettings.from_dict({**record.to_dict(), "frame_rate": 8})
    with pytest.raises(ValueError, match="give one"):
        InputSettings(frame_step=2, target_fps=4.0)


def test_a_checkpoint_from_before_the_record_gets_it_from_its_data_arguments() -> None:
    legacy = InputSettings.from_legacy({"resolution": 32, "frame_step": 2, "num_windows": 3, "train_manifests": None,
                                        "synthetic": None}, frames_per_window=8)
    assert (legacy.resolution, legacy.frame_step, legacy.num_windows, legacy.fps) == (32, 2, 3, 4.0)
    on_files = InputSettings.from_legacy({"train_manifests": "m.csv", "frame_step": 2}, frames_per_window=8)
    assert on_files.fps is None and on_files.sampling_for(30.0) == {"frame_step": 2, "target_fps": None}


def _write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def export_32px_step2(tmp_path_factory) -> Path:
    """A model pretrained at 32 px and frame step 2 on the synthetic world (8 fps), exported."""
    root = tmp_path_factory.mktemp("record")
    summary = pretrain(["--run_dir", str(root / "run"), "--logger.wandb=false", "--trainer.max_steps=2",
                        "--data.resolution=32", "--data.frame_step=2", "--data.batch_size=2",
                        "--data.synthetic.num_train_videos=4", "--data.synthetic.num_val_videos=4",
                        "--data.synthetic.frames_per_video=96", "--trainer.limit_val_batches=0"])
    assert hjepa_main(["export", "--ckpt", summary["checkpoint"], "--out", str(root / "export")]) == 0
    return root / "export"


def test_pretraining_writes_the_record_and_export_keeps_it(export_32px_step2: Path) -> None:
    meta = json.loads((export_32px_step2 / "config.json").read_text())
    record = meta["config"]["input_settings"]
    assert (record["resolution"], record["frame_step"], record["source_fps"]) == (32, 2, 8.0)
    model = hjepa.load_pretrained(export_32px_step2)
    assert model.input_settings.fps == 4.0
    assert model.step_seconds(0) == model.step_frames(0) / 4.0


def test_evaluate_on_the_export_uses_its_resolution_and_step(export_32px_step2: Path, tmp_path: Path) -> None:
    assert hjepa_main(["evaluate", "--ckpt", str(export_32px_step2), "--out", str(tmp_path), "--max_clips", "4",
                       "--batch_size", "4", "--probes", "false"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["input/resolution"], summary["input/frame_step"]) == (32, 2)
    model = hjepa.load_pretrained(export_32px_step2)
    assert summary["level1/h1/horizon_s"] == pytest.approx(model.step_seconds(0))


def test_visualize_resamples_a_video_of_another_rate_to_the_models(export_32px_step2: Path, tmp_path: Path) -> None:
    """The same scene at 8 fps and at 24 fps: both are shown to the model at its 4 fps, so one
    step ahead is the same number of seconds in both."""
    rng = np.random.default_rng(0)
    seconds = 8
    scene = lambda fps: np.stack([np.full((64, 64, 3), int(255 * t / (seconds * fps)), np.uint8)  # noqa: E731
                                  + rng.integers(0, 8, (64, 64, 3), dtype=np.uint8) for t in range(seconds * fps)])
    results = {}
    for fps in (8, 24):
        video = tmp_path / f"scene_{fps}.mp4"
        _write_video(video, scene(fps), fps)
        out = tmp_path / f"viz_{fps}"
        assert hjepa_main(["visualize", "--ckpt", str(export_32px_step2), "--video", str(video),
                           "--out", str(out), "--num_windows", "3"]) == 0
        results[fps] = json.loads((out / "summary.json").read_text())
    assert results[8]["resolution"] == 32 and results[8]["frame_step"] == 2  # the training step on its own rate
    assert results[24]["target_fps"] == 4.0 and results[24]["model_fps"] == 4.0
    assert results[24]["level1/h1/horizon_s"] == pytest.approx(results[8]["level1/h1/horizon_s"], rel=0.02)
    assert results[8]["level1/h1/horizon_s"] == pytest.approx(hjepa.load_pretrained(export_32px_step2).step_seconds(0))


def test_anticipate_on_the_export_uses_its_resolution_and_rate(export_32px_step2: Path, tmp_path: Path) -> None:
    from hjepa.anticipation.config import AnticipationConfig, DataConfig
    from hjepa.anticipation.run import run
    from hjepa.data.synthetic import SyntheticConfig, write_synthetic_dataset

    data = tmp_path / "data"
    write_synthetic_dataset(data, SyntheticConfig(seed=5, num_train_videos=6, num_val_videos=3, frames_per_video=96,
                                                  resolution=32))
    cfg = AnticipationConfig.from_dict({
        "ckpt": str(export_32px_step2), "out_dir": str(tmp_path / "out"), "device": "cpu",
        "data": {"synthetic_dir": str(data)}, "optim": {"epochs": 1, "batch_size": 16},
    })
    assert isinstance(cfg.data, DataConfig)
    summary = run(cfg)
    assert summary["crop_size"] == 32
    assert summary["sample_fps"] == pytest.approx(4.0)  # 8-fps videos at the model's 4 fps: every 2nd frame
