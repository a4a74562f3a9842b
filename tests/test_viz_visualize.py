"""``run_visualize`` on a briefly trained tiny model: synthetic and real videos, every picture valid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_eval_tiny_model import tiny_export  # noqa: F401 - session fixture (trains once)

from hjepa.viz.visualize import level1_colour_maps, run_visualize

VIDEOS = Path(__file__).parents[1].parent / "shared" / "data" / "videos"
PICTURES = ("timeline_png", "nearest_png", "curves_png")


def _check_outputs(summary: dict, out: Path) -> None:
    saved = json.loads((out / "summary.json").read_text())
    assert saved == summary
    for name in PICTURES:
        with Image.open(summary[name]) as im:
            im.verify()  # a complete, valid PNG
        with Image.open(summary[name]) as im:
            assert im.format == "PNG"
            assert im.size == (summary[f"{name}_width"], summary[f"{name}_height"])
            assert im.size[0] >= 500 and im.size[1] >= 300
    with Image.open(summary["gif"]) as gif:
        assert gif.format == "GIF"
        assert gif.size == (summary["gif_width"], summary["gif_height"])
        assert gif.n_frames == summary["gif_frames"] == summary["level1/num_steps"]
    for key, value in summary.items():
        if isinstance(value, float):
            assert math.isfinite(value), key


def test_visualize_synthetic_video(tiny_export, tmp_path):  # noqa: F811
    out = tmp_path / "syn"
    summary = run_visualize(str(tiny_export), "synthetic:3", str(out), columns=8, neighbours=3)
    _check_outputs(summary, out)
    assert summary["video"] == "synthetic:3" and summary["num_levels"] == 2
    assert summary["fps"] == 8.0 and summary["resolution"] == 32  # from the checkpoint's data settings
    # Level 1 steps 2 frames = 0.25 s, level 2 steps 8 frames = 1 s at 8 fps; horizons in seconds.
    assert summary["level1/step_s"] == pytest.approx(0.25) and summary["level2/step_s"] == pytest.approx(1.0)
    assert summary["level2/h2/horizon_s"] == pytest.approx(2.0)
    assert summary["decoder_l1"] is None


def test_prediction_and_target_colours_share_one_projection(tiny_export):  # noqa: F811
    import hjepa
    from hjepa.data.transforms import to_model_input
    from hjepa.viz.clips import load_clip
    from hjepa.viz.pca import fit_pca

    model = hjepa.load_pretrained(tiny_export)
    clip = load_clip("synthetic:0", 8, model.config.min_frames(), 32)
    p1 = model.predict(to_model_input(clip.frames[None]))[0]
    target, pred = p1.present[0], p1.pred[0]  # [S, Q, D], [S, h, Q, D]
    rgb_t, rgb_p, proj = level1_colour_maps(target, pred, 4, 4)
    fitted = fit_pca(target.reshape(-1, 4, 4, target.shape[-1]))
    assert torch.equal(proj.components, fitted.components) and torch.equal(proj.low, fitted.low)
    u, j = 5, 1
    expected = fitted.to_rgb(pred[u - j, j - 1].reshape(4, 4, -1)).numpy()
    assert np.allclose(rgb_p[j][u], expected)
    assert rgb_p[j][0] is None  # no context before the first step
    assert np.allclose(rgb_t, fitted.to_rgb(target.reshape(-1, 4, 4, target.shape[-1])).numpy())
    # A prediction equal to its target gets exactly the target's colours.
    same = pred.clone()
    same[u - j, j - 1] = target[u]
    _, rgb_same, _ = level1_colour_maps(target, same, 4, 4)
    assert np.array_equal(rgb_same[j][u], rgb_t[u])


def test_visualize_with_decoder(tiny_export, tmp_path):  # noqa: F811
    plain = run_visualize(str(tiny_export), "synthetic:1", str(tmp_path / "a"), num_windows=4)
    dec = run_visualize(str(tiny_export), "synthetic:1", str(tmp_path / "b"), num_windows=4, decoder=True,
                        decoder_steps=20)
    _check_outputs(dec, tmp_path / "b")
    assert 0 <= dec["decoder_l1"] < 0.5
    assert dec["gif_width"] > plain["gif_width"]  # the decoded column is added
    assert dec["timeline_png_height"] > plain["timeline_png_height"]  # and the decoded row


def test_visualize_logs_to_an_attached_wandb_run(tiny_export, tmp_path, monkeypatch):  # noqa: F811
    wandb = pytest.importorskip("wandb")
    logged = []

    class FakeRun:
        def log(self, data):
            logged.append(data)

    monkeypatch.setattr(wandb, "run", FakeRun())
    run_visualize(str(tiny_export), "synthetic:2", str(tmp_path), num_windows=4)
    assert len(logged) == 1
    assert {"visualize/timeline", "visualize/nearest", "visualize/curves", "visualize/level1_gif"} <= set(logged[0])


def test_visualize_refuses_bad_input(tiny_export, tmp_path):  # noqa: F811
    with pytest.raises(FileNotFoundError, match="no such file"):
        run_visualize(str(tiny_export), str(tmp_path / "missing.mp4"), str(tmp_path))
    with pytest.raises(ValueError, match="synthetic"):
        run_visualize(str(tiny_export), "synthetic:x", str(tmp_path))
    with pytest.raises(ValueError, match="validation split has"):
        run_visualize(str(tiny_export), "synthetic:9999", str(tmp_path))


# Real clips of every container and codec at hand: mp4/h264, HMDB51 packed-bitstream avi,
# mkv, rotated 3-frame phone movies (padded), 1080p, a file with two video streams, 176x144.
REAL = [
    "R6llTwEh07w.mp4",
    "RATRACE_wave_f_nm_np1_fr_goo_37.avi",
    "flipping_a_pancake.mkv",
    "video_90.mov",
    "demo_skeleton.mp4",
    "nasa_13013.mp4",
    "carphone_distorted.mp4",
    "test.avi",
]


@pytest.mark.parametrize("name", REAL)
def test_visualize_real_clips(tiny_export, tmp_path, name):  # noqa: F811
    path = VIDEOS / name
    if not path.is_file():
        pytest.skip(f"real test clip {path} is absent (shared data not laid out here)")
    summary = run_visualize(str(tiny_export), str(path), str(tmp_path), frame_step=2, max_windows=4, columns=8)
    _check_outputs(summary, tmp_path)
    if name == "video_90.mov":  # 3 frames: the shortest clip the model takes, repeating the last frame
        assert summary["num_frames"] == 24 and summary["padded_frames"] == 24 - 2  # source frames 0 and 2 exist
    else:  # 4 windows of 8 frames, every other source frame
        assert summary["num_frames"] == 32 and summary["padded_frames"] == 0
