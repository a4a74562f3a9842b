"""Figure builders: plain data in, a matplotlib ``Figure`` out.

No pyplot: figures are built on ``matplotlib.figure.Figure`` and rendered by the Agg canvas,
so nothing here touches global GUI state and everything works headless and in threads.
Times are always in seconds so levels with different step lengths share one axis.

- :func:`timeline_figure`: rows of images (frames, feature maps) placed at their times,
  and rows of coloured strips (a level's steps) on the same time axis;
- :func:`nearest_frames_figure`: per (level, horizon), the frames whose representation is
  nearest the prediction beside the true future;
- :func:`horizon_curves_figure`: metric vs horizon in seconds, one line per level, baselines dashed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = [
    "level_color",
    "ImageRow",
    "StripRow",
    "timeline_figure",
    "Neighbour",
    "NearestRow",
    "nearest_frames_figure",
    "Curve",
    "Panel",
    "horizon_curves_figure",
    "save_figure",
    "figure_to_array",
]

# One colour per level everywhere (curves, strips, labels): matplotlib's tab10 order.
_LEVEL_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def level_color(level: int) -> str:
    """Colour of level ``level`` (1-based)."""
    return _LEVEL_COLORS[(level - 1) % len(_LEVEL_COLORS)]


def _as_float_image(img: np.ndarray) -> np.ndarray:
    """``uint8`` or float ``[H, W, 3]`` (or ``[H, W]``) -> float ``[H, W, 3]`` in [0, 1]."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        raise ValueError(f"image must be [H, W, 3], got shape {img.shape}")
    if img.dtype == np.uint8:
        return img[..., :3].astype(np.float32) / 255.0
    return np.clip(img[..., :3].astype(np.float32), 0.0, 1.0)


@dataclass
class ImageRow:
    """A row of images, each centred on its time.

    Attributes:
        label: row title shown left of the axis.
        images: ``[H, W, 3]`` arrays (uint8 or float in [0, 1]); ``None`` leaves a gap with ``missing``.
        times: centre time in seconds of each image.
        width_s: width of each image in seconds (default: 92 % of the smallest spacing).
        captions: optional text under each image.
        missing: text drawn where an image is ``None``.
        pixelated: draw with nearest-neighbour interpolation (feature maps of a few patches).
    """

    label: str
    images: Sequence[np.ndarray | None]
    times: Sequence[float]
    width_s: float | None = None
    captions: Sequence[str] | None = None
    missing: str = "no context"
    pixelated: bool = False


@dataclass
class StripRow:
    """A row of coloured intervals (one per step of a level).

    Attributes:
        label: row title.
        starts, ends: interval bounds in seconds.
        colors: ``[n, 3]`` RGB in [0, 1], one per interval.
        texts: optional short text inside each interval (drawn only where it fits).
        height_in: row height in inches.
    """

    label: str
    starts: Sequence[float]
    ends: Sequence[float]
    colors: np.ndarray
    texts: Sequence[str] | None = None
    height_in: float = 0.38


def _row_width_s(row: ImageRow, span: float) -> float:
    if row.width_s is not None:
        return row.width_s
    times = np.sort(np.asarray(row.times, dtype=float))
    if len(times) < 2:
        return 0.2 * span
    return 0.92 * float(np.min(np.diff(times)))


def timeline_figure(
    rows: Sequence[ImageRow | StripRow],
    t_range: tuple[float, float],
    title: str | None = None,
    width_in: float = 14.0,
    label_in: float = 1.9,
    gap_in: float = 0.12,
) -> Figure:
    """Images and strips stacked on one shared time axis (x in seconds).

    The y axis is measured in inches, so an image drawn with a width in seconds keeps its
    aspect ratio whatever the time span; rows are stacked top to bottom.

    Args:
        rows: :class:`ImageRow` / :class:`StripRow`, top first.
        t_range: ``(t0, t1)`` visible time span in seconds.
        title: figure title.
        width_in: figure width in inches.
        label_in: left margin for row labels, inches.
    """
    t0, t1 = float(t_range[0]), float(t_range[1])
    if not t1 > t0:
        raise ValueError(f"t_range must be increasing, got {t_range}")
    # Widen the span so that no image is cut at the edges (image widths depend only on spacing).
    for row in rows:
        if isinstance(row, ImageRow) and len(row.times):
            half = _row_width_s(row, t1 - t0) / 2
            t0, t1 = min(t0, min(row.times) - half), max(t1, max(row.times) + half)
    right_in, top_in, bottom_in = 0.25, (0.55 if title else 0.2), 0.55
    axis_w = width_in - label_in - right_in
    s_per_in = (t1 - t0) / axis_w

    # Lay rows out in inches: (row, y_top, height).
    layout: list[tuple[ImageRow | StripRow, float, float]] = []
    y = 0.0
    for row in rows:
        if isinstance(row, ImageRow):
            w_in = _row_width_s(row, t1 - t0) / s_per_in
            shapes = [np.asarray(im).shape for im in row.images if im is not None]
            aspect = max((s[0] / s[1] for s in shapes), default=0.75)
            h = w_in * aspect + (0.2 if row.captions else 0.0)
        else:
            h = row.height_in
        layout.append((row, y, h))
        y += h + gap_in
    axis_h = max(y - gap_in, 0.1)

    fig = Figure(figsize=(width_in, axis_h + top_in + bottom_in))
    FigureCanvasAgg(fig)
    H = axis_h + top_in + bottom_in
    ax = fig.add_axes((label_in / width_in, bottom_in / H, axis_w / width_in, axis_h / H))
    ax.set_xlim(t0, t1)
    ax.set_ylim(axis_h, 0.0)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel("time (s)")
    ax.grid(axis="x", color="0.85", linewidth=0.6, zorder=0)
    ticks, labels = [], []
    for row, y_top, h in layout:
        ticks.append(y_top + h / 2)
        labels.append(row.label)
        if isinstance(row, ImageRow):
            _draw_image_row(ax, row, y_top, h, t1 - t0, s_per_in)
        else:
            _draw_strip_row(ax, row, y_top, h, s_per_in)
    # imshow autoscales; pin the limits again after drawing.
    ax.set_xlim(t0, t1)
    ax.set_ylim(axis_h, 0.0)
    ax.set_yticks(ticks, labels)
    ax.tick_params(axis="y", length=0, labelsize=9)
    if title:
        fig.suptitle(title, x=0.5, y=1 - 0.12 / H, va="top", fontsize=11)
    return fig


def _draw_image_row(ax, row: ImageRow, y_top: float, h: float, span: float, s_per_in: float) -> None:
    w = _row_width_s(row, span)
    img_h = h - (0.2 if row.captions else 0.0)
    for i, (img, t) in enumerate(zip(row.images, row.times)):
        x0, x1 = t - w / 2, t + w / 2
        if img is None:
            ax.add_patch(Rectangle((x0, y_top), w, img_h, facecolor="0.95", edgecolor="0.8", lw=0.6, zorder=2))
            ax.text(t, y_top + img_h / 2, row.missing, ha="center", va="center", fontsize=7, color="0.5", zorder=3)
        else:
            ax.imshow(
                _as_float_image(img),
                extent=(x0, x1, y_top + img_h, y_top),
                interpolation="nearest" if row.pixelated else "antialiased",
                aspect="auto",
                zorder=2,
            )
        if row.captions:
            ax.text(t, y_top + img_h + 0.03, row.captions[i], ha="center", va="top", fontsize=7, color="0.25")


def _draw_strip_row(ax, row: StripRow, y_top: float, h: float, s_per_in: float) -> None:
    colors = np.clip(np.asarray(row.colors, dtype=float), 0, 1)
    for i, (a, b) in enumerate(zip(row.starts, row.ends)):
        ax.add_patch(Rectangle((a, y_top), b - a, h, facecolor=colors[i], edgecolor="white", lw=1.0, zorder=2))
        if row.texts and row.texts[i] and (b - a) / s_per_in > 0.055 * max(len(row.texts[i]), 1) + 0.05:
            lum = float(colors[i] @ np.array([0.299, 0.587, 0.114]))
            ax.text((a + b) / 2, y_top + h / 2, row.texts[i], ha="center", va="center", fontsize=7,
                    color="black" if lum > 0.55 else "white", zorder=3)


@dataclass
class Neighbour:
    """One retrieved frame: its image, its time (s), its distance to the query, and whether it is the true future."""

    image: np.ndarray
    time: float
    distance: float
    is_true: bool = False


@dataclass
class NearestRow:
    """One (level, horizon) row of :func:`nearest_frames_figure`.

    Attributes:
        label: e.g. ``"L2  h=1  (+0.53 s)"``.
        context: the last frame the model saw.
        context_time: its time in seconds.
        truth: the true future frame.
        truth_time: its time in seconds.
        neighbours: nearest frames, nearest first.
        color: label colour (the level's).
    """

    label: str
    context: np.ndarray
    context_time: float
    truth: np.ndarray
    truth_time: float
    neighbours: list[Neighbour] = field(default_factory=list)
    color: str = "black"


def nearest_frames_figure(rows: Sequence[NearestRow], title: str | None = None, thumb_in: float = 1.35) -> Figure:
    """Thumbnails: what the model expects to see, next to what came.

    Columns: the last context frame, the true future, then the frames whose target
    representation is nearest the prediction (nearest first); a green frame marks a
    neighbour that is the true future.
    """
    if not rows:
        raise ValueError("nearest_frames_figure needs at least one row")
    k = max(len(r.neighbours) for r in rows)
    cols = 2 + k
    aspect = rows[0].truth.shape[0] / rows[0].truth.shape[1]
    label_in, gap_in = 2.1, 0.25
    cell_w, cell_h = thumb_in, thumb_in * aspect + 0.32
    W = label_in + cols * cell_w + gap_in + 0.2
    top = 0.75 if title else 0.45
    H = top + len(rows) * cell_h + 0.1
    fig = Figure(figsize=(W, H))
    FigureCanvasAgg(fig)
    headers = ["last seen", "true future"] + [f"nearest {i + 1}" for i in range(k)]
    for r, row in enumerate(rows):
        y_top = H - top - r * cell_h
        fig.text(0.12 / W, (y_top - cell_h / 2 + 0.1) / H, row.label, ha="left", va="center", fontsize=9,
                 color=row.color, fontweight="bold")
        cells = [(row.context, f"{row.context_time:.2f} s", None), (row.truth, f"{row.truth_time:.2f} s", None)]
        cells += [(n.image, f"{n.time:.2f} s  d={n.distance:.2f}", n.is_true) for n in row.neighbours]
        for c, (img, cap, is_true) in enumerate(cells):
            x0 = label_in + c * cell_w + (gap_in if c >= 2 else 0.0)
            ax = fig.add_axes(((x0 + 0.04) / W, (y_top - cell_h + 0.3) / H, (cell_w - 0.08) / W, (cell_h - 0.32) / H))
            ax.imshow(_as_float_image(img), aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            edge, lw = ("0.6", 0.8)
            if is_true is True:
                edge, lw = ("#2ca02c", 3.0)
            elif c == 1:
                edge, lw = ("#2ca02c", 1.5)
            for s in ax.spines.values():
                s.set_edgecolor(edge)
                s.set_linewidth(lw)
            ax.set_xlabel(cap, fontsize=7, labelpad=2)
            if r == 0:
                ax.set_title(headers[c], fontsize=9)
    if title:
        fig.suptitle(title, y=1 - 0.1 / H, va="top", fontsize=11)
    return fig


@dataclass
class Curve:
    """One line of :func:`horizon_curves_figure`.

    Attributes:
        label: legend text.
        x: horizons in seconds.
        y: values.
        color: line colour.
        style: ``-`` for the model, ``--`` / ``:`` for baselines.
        marker: point marker.
    """

    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: str = "black"
    style: str | tuple = "-"
    marker: str = "o"


@dataclass
class Panel:
    """One axes of :func:`horizon_curves_figure`: a title, a y label, curves, optional reference
    lines (``hlines``: ``(y, legend label)``), y range and log scale (``logy``)."""

    title: str
    ylabel: str
    curves: list[Curve]
    hlines: list[tuple[float, str]] = field(default_factory=list)
    ylim: tuple[float, float] | None = None
    logy: bool = False


def horizon_curves_figure(
    panels: Sequence[Panel],
    title: str | None = None,
    logx: bool | None = None,
    style_labels: dict[str, str] | None = None,
) -> Figure:
    """Metric vs horizon in seconds, one axes per panel, one shared legend.

    Args:
        panels: :class:`Panel` list (e.g. error, copy-ratio, retrieval).
        title: figure title.
        logx: log-scaled time axis; by default when the horizons span more than a factor of 8,
            which is the usual case across levels.
        style_labels: compact legend: one entry per colour (named by its solid curve) plus one
            grey entry per line style, e.g. ``{"--": "copy-the-present", "-.": "mean target"}``.
            Default: one entry per curve label.
    """
    if not panels:
        raise ValueError("horizon_curves_figure needs at least one panel")
    xs = [v for p in panels for c in p.curves for v in c.x if v > 0]
    if logx is None:
        logx = bool(xs) and max(xs) / min(xs) > 8
    fig = Figure(figsize=(4.6 * len(panels) + 0.4, 4.1))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    handles: dict[str, object] = {}
    for ax, panel in zip(axes, panels):
        for c in panel.curves:
            (line,) = ax.plot(list(c.x), list(c.y), linestyle=c.style, marker=c.marker, color=c.color,
                              label=c.label, markersize=4 if c.style != "-" else 5,
                              linewidth=1.2 if c.style != "-" else 2.0, alpha=0.85 if c.style != "-" else 1.0)
            handles.setdefault(c.label, line)
        for yv, lab in panel.hlines:
            line = ax.axhline(yv, color="0.5", linestyle=":", linewidth=1.0, label=lab)
            handles.setdefault(lab, line)
        if logx:
            ax.set_xscale("log")
            _nice_log_ticks(ax, xs)
        ax.set_xlabel("horizon (s)")
        ax.set_ylabel(panel.ylabel)
        ax.set_title(panel.title, fontsize=10)
        ax.grid(True, color="0.9", linewidth=0.6)
        if panel.logy:
            ax.set_yscale("log")
        if panel.ylim:
            ax.set_ylim(*panel.ylim)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    if style_labels:
        from matplotlib.lines import Line2D

        compact: dict[str, object] = {}
        for panel in panels:
            for c in panel.curves:
                if c.style == "-":
                    compact.setdefault(c.label, Line2D([], [], color=c.color, lw=2.0, marker=c.marker, ms=5))
        for panel in panels:  # curves with a style of their own keep their own entry
            for c in panel.curves:
                if c.style != "-" and not (isinstance(c.style, str) and c.style in style_labels):
                    compact.setdefault(c.label, handles[c.label])
        used = {c.style for p in panels for c in p.curves if isinstance(c.style, str)}
        for style, lab in style_labels.items():
            if style in used:
                compact[lab] = Line2D([], [], color="0.35", lw=1.2, linestyle=style)
        for panel in panels:
            for _, lab in panel.hlines:
                compact.setdefault(lab, handles[lab])
        handles = compact
    ncol = min(len(handles), 6)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=ncol, fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    rows_legend = math.ceil(len(handles) / ncol) if handles else 0
    bottom = 0.13 + 0.06 * rows_legend
    fig.subplots_adjust(left=0.07 if len(panels) > 1 else 0.12, right=0.98, bottom=bottom,
                        top=0.86 if title else 0.92, wspace=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _nice_log_ticks(ax, xs: Sequence[float]) -> None:
    """Plain-number ticks on a log time axis (0.1, 0.2, 0.5, 1, 2, 5 ... s), not 10^-1."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    lo, hi = min(xs), max(xs)
    cands = [m * 10.0**e for e in range(-3, 4) for m in (1, 2, 5)]
    ticks = [t for t in cands if lo / 1.5 <= t <= hi * 1.5] or [lo, hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG (or the format of the suffix) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path


def figure_to_array(fig: Figure, dpi: int = 100) -> np.ndarray:
    """Render ``fig`` to ``uint8 [H, W, 3]`` (for wandb or GIF frames)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
