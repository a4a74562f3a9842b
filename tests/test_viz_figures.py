"""Figure builders and the GIF writer: files exist, sizes are as stated, content is where it belongs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hjepa.viz.figures import (
    Curve,
    ImageRow,
    NearestRow,
    Neighbour,
    Panel,
    StripRow,
    figure_to_array,
    horizon_curves_figure,
    level_color,
    nearest_frames_figure,
    save_figure,
    timeline_figure,
)
from hjepa.viz.gif import compose_panels, write_gif


def _frames(t: int = 8, h: int = 48, w: int = 64) -> np.ndarray:
    f = np.full((t, h, w, 3), 20, np.uint8)
    for i in range(t):
        f[i, 10:30, 4 + 6 * i : 16 + 6 * i] = (255, 0, 0)
    return f


def test_timeline_figure_places_images_and_strips(tmp_path):
    frames = _frames()
    times = [0.1 + 0.2 * i for i in range(8)]
    maps = [np.random.default_rng(i).random((4, 4, 3)) for i in range(8)]
    rows = [
        ImageRow("frames", list(frames), times, captions=[f"{t:.1f} s" for t in times]),
        ImageRow("L1 target", maps, times, pixelated=True),
        ImageRow("L1 predicted", [None] + maps[1:], times, pixelated=True),
        StripRow("L2 steps", [0.0, 0.8], [0.8, 1.6], np.array([[0, 0, 1.0], [0, 1.0, 0]]), texts=["0", "1"]),
    ]
    fig = timeline_figure(rows, (0.0, 1.6), title="clip")
    path = save_figure(fig, tmp_path / "timeline.png", dpi=80)
    img = np.asarray(Image.open(path).convert("RGB"))
    w_in, h_in = fig.get_size_inches()
    assert abs(img.shape[0] - h_in * 80) <= 1 and abs(img.shape[1] - w_in * 80) <= 1
    # The red squares of the frames and the blue / green strips are drawn.
    red = (img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] < 60)
    blue = (img[..., 2] > 200) & (img[..., 0] < 60) & (img[..., 1] < 60)
    green = (img[..., 1] > 200) & (img[..., 0] < 60) & (img[..., 2] < 60)
    assert red.sum() > 200 and blue.sum() > 200 and green.sum() > 200
    # Frames are on top, strips at the bottom.
    assert np.nonzero(red)[0].mean() < np.nonzero(blue)[0].mean()
    with pytest.raises(ValueError, match="increasing"):
        timeline_figure(rows, (1.0, 1.0))


def test_nearest_frames_figure(tmp_path):
    frames = _frames()
    rows = [
        NearestRow(f"L{k} h={h}", frames[0], 0.0, frames[3], 0.6,
                   [Neighbour(frames[i], 0.2 * i, 0.1 * i, is_true=(i == 3)) for i in (2, 3, 5)],
                   color=level_color(k))
        for k in (1, 2) for h in (1, 2)
    ]
    fig = nearest_frames_figure(rows, title="nearest")
    arr = figure_to_array(fig, dpi=60)
    w_in, h_in = fig.get_size_inches()
    assert abs(arr.shape[0] - h_in * 60) <= 1 and abs(arr.shape[1] - w_in * 60) <= 1 and arr.shape[2] == 3
    assert len(fig.axes) == 4 * 5
    with pytest.raises(ValueError, match="at least one row"):
        nearest_frames_figure([])


def test_horizon_curves_figure_dashes_baselines(tmp_path):
    curves = []
    for k, (step, h) in {1: (0.13, 2), 2: (0.53, 3)}.items():
        x = [step * (j + 1) for j in range(h)]
        curves += [
            Curve(f"L{k}", x, [0.5] * h, color=level_color(k)),
            Curve(f"L{k} copy", x, [0.8] * h, color=level_color(k), style="--", marker="s"),
        ]
    fig = horizon_curves_figure(
        [Panel("error", "L1", curves), Panel("retrieval", "top-1", curves[::2], hlines=[(0.1, "chance")])],
        title="t", style_labels={"--": "copy-the-present"},
    )
    ax = fig.axes[0]
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert styles["L1"] == "-" and styles["L1 copy"] == "--"
    assert ax.get_xscale() == "log"  # 0.13 .. 1.6 s spans more than a factor of 8
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["L1", "L2", "copy-the-present", "chance"]
    save_figure(fig, tmp_path / "curves.png")
    assert Image.open(tmp_path / "curves.png").size[0] > 500


def test_gif_has_every_frame_at_the_stated_size(tmp_path):
    frames = _frames()
    maps = np.random.default_rng(0).random((8, 4, 4, 3))
    panels = [
        compose_panels([f, m, m], ["frame", "target", "predicted"], height=96, nearest=[False, True, True],
                       footer=f"t = {i}")
        for i, (f, m) in enumerate(zip(frames, maps))
    ]
    size = panels[0].shape
    path = write_gif(panels, tmp_path / "a.gif", fps=5)
    gif = Image.open(path)
    assert gif.format == "GIF" and gif.n_frames == 8
    assert gif.size == (size[1], size[0])
    assert gif.info["duration"] == 200
    gif.seek(3)
    first = np.asarray(gif.convert("RGB"))
    # Panel layout: 96 px panels with a label band above; the frame keeps its 4:3 aspect.
    assert first.shape[0] == size[0] and panels[0].shape[1] == 6 * 4 + 128 + 96 + 96
    with pytest.raises(ValueError, match="one size"):
        write_gif([panels[0], panels[0][:-1]], tmp_path / "b.gif")
