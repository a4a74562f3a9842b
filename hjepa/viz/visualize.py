"""``hjepa visualize``: pictures of what every level of a trained H-JEPA predicts for one video."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hjepa.eval.metrics import cosine_similarity
from hjepa.viz.clips import VideoClip, load_clip, source_fps
from hjepa.viz.figures import (
    Curve,
    ImageRow,
    NearestRow,
    Neighbour,
    Panel,
    StripRow,
    horizon_curves_figure,
    level_color,
    nearest_frames_figure,
    save_figure,
    timeline_figure,
)
from hjepa.viz.gif import compose_panels, write_gif
from hjepa.viz.pca import PCAProjector, fit_pca
from hjepa.wandb_run import active_run

__all__ = ["run_visualize", "visualize_clip"]

log = logging.getLogger(__name__)

DPI = 110  # resolution of every PNG written here


def run_visualize(
    ckpt: str,
    video: str,
    out_dir: str = "runs/visualize",
    reader: str = "decord",
    resolution: int | None = None,
    frame_step: int | None = None,
    num_windows: int | None = None,
    max_windows: int = 8,
    start_frame: int = 0,
    columns: int = 12,
    neighbours: int = 4,
    gif_fps: float = 4.0,
    decoder: bool = False,
    decoder_steps: int = 300,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Draw one video's frames, every level's targets and predictions, and write ``summary.json``.

    Args:
        ckpt: a ``.ckpt`` from ``hjepa pretrain`` or an ``hjepa export`` folder.
        video: a video file (any format the readers decode), or ``synthetic[:index]`` for a
            video of the synthetic validation split (its ground-truth activities are drawn too).
        out_dir: output folder (created).
        reader: ``decord`` or ``pyav``.
        resolution: frame side the model sees (default: the checkpoint's training resolution,
            else the synthetic data's).
        frame_step: source frames between clip frames (default: the video is resampled to the
            frame rate the model was trained at, ``model.input_settings.fps``; else 1).
        num_windows: windows in the clip (default: as many as the video covers, at most ``max_windows``).
        max_windows: cap on windows when ``num_windows`` is not given.
        start_frame: first source frame of the clip.
        columns: at most this many frames (level-1 steps) shown along the time axis.
        neighbours: nearest frames shown per (level, horizon).
        gif_fps: frames per second of the animation.
        decoder: also train a small decoder on the video's frozen level-1 features and render
            predicted representations as frames (a row in the timeline and a GIF column).
        decoder_steps: training steps of that decoder.
        device: ``cpu`` or ``cuda``.
        seed: seed of the decoder's training.

    Returns:
        The summary (also written to ``out_dir/summary.json``). Flat keys:

        - ``video``, ``num_frames`` (clip frames), ``source_frames``, ``fps`` (the video's),
          ``frame_step`` or ``target_fps`` (how it was sampled), ``model_fps`` (the rate the
          model was trained at), ``resolution``, ``clip_seconds``, ``padded_frames`` (clip frames repeating the last
          frame of a short video), ``num_levels``;
        - ``level{k}/step_s``: seconds one step of level k spans; ``level{k}/num_steps``;
        - ``level{k}/h{j}/horizon_s``: how far ahead horizon j of level k looks, in seconds;
        - ``level{k}/h{j}/l1``, ``/cosine``: prediction vs layer-normed target on this video;
          ``/copy_l1``, ``/mean_l1``: copy-the-present and mean-target (this video's mean)
          baselines; ``/copy_cosine``: cosine of the copy-the-present baseline;
          ``/copy_ratio``, ``/mean_ratio``: ``l1`` over each baseline;
          ``/rank``: mean rank of the true future among this video's steps (1 = best),
          ``/num_candidates``: steps it is ranked among;
        - ``pca1_explained``: share of level-1 target variance on the 3 colour components;
        - ``decoder_l1``: mean absolute pixel error (0..1) of the decoder on its training frames
          (null without ``decoder``);
        - ``timeline_png``, ``nearest_png``, ``curves_png``, ``gif``, ``summary_json``: paths;
          ``{picture}_width`` / ``{picture}_height``: their size in pixels; ``gif_frames``:
          frames of the animation (one per level-1 step);
        - ``wall_time_s``.
    """
    from hjepa.loading import load_pretrained

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = load_pretrained(ckpt, map_location=device)
    trained = model.input_settings
    res = resolution or (trained.resolution if trained else 64)
    # The clip is sampled at the frame rate the model saw, whatever the video's own: a step then
    # spans the seconds it was trained on. An explicit frame_step overrides.
    target_fps = None
    if frame_step is None and trained is not None:
        sampling = trained.sampling_for(source_fps(video, reader, trained))
        step, target_fps = sampling["frame_step"] or 1, sampling["target_fps"]
    else:
        step = frame_step or 1
    cfg = model.config
    clip = load_clip(
        video,
        frames_per_window=cfg.frames_per_window,
        min_frames=cfg.min_frames(),
        resolution=res,
        frame_step=step,
        num_windows=num_windows,
        max_windows=max_windows,
        start_frame=start_frame,
        reader=reader,
        synthetic_config=(trained.synthetic if trained else None) or None,
        target_fps=target_fps,
    )
    summary = visualize_clip(model, clip, out, columns=columns, neighbours=neighbours, gif_fps=gif_fps,
                             decoder=decoder, decoder_steps=decoder_steps, device=device, seed=seed)
    summary.update({"frame_step": None if target_fps else step, "target_fps": target_fps, "resolution": res,
                    "model_fps": trained.fps if trained else None, "wall_time_s": time.perf_counter() - t0})
    summary = {k: summary[k] for k in sorted(summary)}
    path = out / "summary.json"
    summary["summary_json"] = str(path)
    path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    _log_to_wandb(summary)
    return summary


@torch.no_grad()
def visualize_clip(
    model: torch.nn.Module,
    clip: VideoClip,
    out: Path,
    columns: int = 12,
    neighbours: int = 4,
    gif_fps: float = 4.0,
    decoder: bool = False,
    decoder_steps: int = 300,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """All pictures of one clip; returns the summary entries (see :func:`run_visualize`)."""
    from hjepa.data.transforms import to_model_input

    model.eval().to(device)
    x = to_model_input(clip.frames[None].to(device))
    preds = model.predict(x)
    hg, wg = model.patch_grid(x.shape)
    frames = clip.frames.numpy()  # [T, H, W, 3]
    t_frame = clip.times.numpy()  # seconds of every clip frame
    dt = float(np.median(np.diff(t_frame))) if len(t_frame) > 1 else 1.0 / clip.fps
    if not dt > 0:  # a clip of one repeated frame (padded short video)
        dt = 1.0 / clip.fps

    def span(start_frame: int, end_frame: int) -> tuple[float, float]:
        return float(t_frame[start_frame]), float(t_frame[end_frame]) + dt

    summary: dict[str, Any] = {
        "video": clip.source,
        "num_frames": int(len(frames)),
        "source_frames": clip.source_frames,
        "fps": clip.fps,
        "clip_seconds": float(t_frame[-1] - t_frame[0] + dt),
        "padded_frames": clip.padded,
        "num_levels": len(preds),
    }
    levels = []
    for k, p in enumerate(preds):
        ends = p.context_end_frames.cpu()
        starts = ends - p.step_frames + 1
        levels.append({
            "pred": p.pred[0].float().cpu(),  # [S, h, Q, D]
            "target": p.present[0].float().cpu(),  # [S, Q, D]
            "valid": p.valid.cpu(),
            "ends": ends,
            "spans": [span(int(a), int(b)) for a, b in zip(starts, ends)],
            "step_frames": p.step_frames,
        })
        summary[f"level{k + 1}/num_steps"] = int(len(ends))
        summary[f"level{k + 1}/step_s"] = p.step_frames * dt
    summary.update(_scores(levels, dt))

    l1 = levels[0]
    rgb_target, rgb_pred, proj1 = level1_colour_maps(l1["target"], l1["pred"], hg, wg)
    summary["pca1_explained"] = float(proj1.explained.sum())

    decoded = None
    if decoder:
        decoded, summary["decoder_l1"] = _decoded_predictions(l1, frames, hg, wg, model, seed, decoder_steps)
    else:
        summary["decoder_l1"] = None

    paths = {
        "timeline_png": out / "timeline.png",
        "nearest_png": out / "nearest.png",
        "curves_png": out / "curves.png",
        "gif": out / "level1.gif",
    }
    title = f"{Path(clip.source).name}: frames, level-1 feature maps (PCA → RGB), and every level's steps"
    figures = {
        "timeline_png": timeline_figure(
            _timeline_rows(clip, levels, frames, rgb_target, rgb_pred, decoded, columns, t_frame, dt),
            (float(t_frame[0]), float(t_frame[-1]) + dt),
            title=title,
        ),
        "nearest_png": nearest_frames_figure(
            _nearest_rows(levels, frames, t_frame, dt, neighbours),
            title="what each level expects to see: frames whose target is nearest the prediction",
        ),
        "curves_png": _curves(summary, len(levels), clip.source),
    }
    for name, fig in figures.items():
        save_figure(fig, paths[name], dpi=DPI)
        # The size the file must have: the canvas size at the saving resolution.
        fig.set_dpi(DPI)
        summary[f"{name}_width"], summary[f"{name}_height"] = (int(v) for v in fig.canvas.get_width_height())
    gif_frames = _gif_frames(levels, frames, rgb_target, rgb_pred, decoded, t_frame)
    write_gif(gif_frames, paths["gif"], fps=gif_fps)
    summary["gif_width"], summary["gif_height"] = int(gif_frames[0].shape[1]), int(gif_frames[0].shape[0])
    summary["gif_frames"] = len(gif_frames)
    summary.update({k: str(v) for k, v in paths.items()})
    return summary


def level1_colour_maps(
    target: Tensor, pred: Tensor, hg: int, wg: int
) -> tuple[np.ndarray, dict[int, list[np.ndarray | None]], PCAProjector]:
    """Level-1 feature maps as colours, target and prediction with one projection.

    The top three principal components are fitted on the target tokens of the clip and the
    same fitted projection (mean, components, colour range) colours every prediction, so a
    colour means the same feature on both sides.

    Args:
        target: ``[S, Q, D]`` layer-normed target tokens of every level-1 step (Q = Hg*Wg).
        pred: ``[S, h, Q, D]``: from context step t, the prediction of step t+j (index j-1).
    Returns:
        ``rgb_target``: ``float [S, Hg, Wg, 3]``; ``rgb_pred``: horizon j -> list over target
        steps u of the map predicted for u from context u-j (None when u-j < 0);
        the fitted :class:`PCAProjector`.
    """
    s, q, d = target.shape
    if q != hg * wg:
        raise ValueError(f"level 1 has {q} tokens per step but the patch grid is {hg}x{wg}")
    projector = fit_pca(target.reshape(s, hg, wg, d))
    rgb_target = projector.to_rgb(target.reshape(s, hg, wg, d)).numpy()
    rgb_pred: dict[int, list[np.ndarray | None]] = {}
    for j in range(1, pred.shape[1] + 1):
        rgb_pred[j] = [None if u - j < 0 else projector.to_rgb(pred[u - j, j - 1].reshape(hg, wg, d)).numpy()
                       for u in range(s)]
    return rgb_target, rgb_pred, projector


def _scores(levels: list[dict], dt: float) -> dict[str, float]:
    """Per level and horizon: error vs baselines and the rank of the true future, on this clip."""
    out: dict[str, float] = {}
    for k, lv in enumerate(levels):
        pred, target, valid = lv["pred"], lv["target"], lv["valid"]
        s, h = valid.shape
        mean_t = target.mean(0)
        for j in range(1, h + 1):
            ctx = torch.nonzero(valid[:, j - 1]).flatten()
            if len(ctx) == 0:
                continue
            key = f"level{k + 1}/h{j}"
            pr, tg, pres = pred[ctx, j - 1], target[ctx + j], target[ctx]
            l1 = (pr - tg).abs().mean().item()
            copy = (pres - tg).abs().mean().item()
            mean = (mean_t - tg).abs().mean().item()
            ranks, n_cand = _ranks(pr, target, ctx, j)
            out.update({
                f"{key}/horizon_s": j * lv["step_frames"] * dt,
                f"{key}/l1": l1,
                f"{key}/cosine": cosine_similarity(pr, tg).mean().item(),
                f"{key}/copy_cosine": cosine_similarity(pres, tg).mean().item(),
                f"{key}/copy_l1": copy,
                f"{key}/mean_l1": mean,
                f"{key}/copy_ratio": l1 / copy if copy > 1e-12 else 1.0,
                f"{key}/mean_ratio": l1 / mean if mean > 1e-12 else 1.0,
                f"{key}/rank": ranks.double().mean().item(),
                f"{key}/num_candidates": float(n_cand),
            })
    return out


def _distances(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute difference, ``pred: [P, Q, D]`` x ``target: [S, Q, D]`` -> ``[P, S]``."""
    return torch.cdist(pred.reshape(len(pred), -1), target.reshape(len(target), -1), p=1) / pred[0].numel()


def _ranks(pred: Tensor, target: Tensor, ctx: Tensor, j: int) -> tuple[Tensor, int]:
    """Rank of step ``ctx + j`` among all steps but the present one (ties count against)."""
    dist = _distances(pred, target)  # [P, S]
    dist[torch.arange(len(ctx)), ctx] = float("inf")  # the present step is not a candidate
    true = dist[torch.arange(len(ctx)), ctx + j]
    return (dist <= true[:, None]).sum(1), target.shape[0] - 1


def _thumb_frame(frames: np.ndarray, end_frame: int) -> np.ndarray:
    """The frame that stands for a step: its last one (what the step has seen)."""
    return frames[int(end_frame)]


def _timeline_rows(clip: VideoClip, levels: list[dict], frames: np.ndarray, rgb_target: np.ndarray,
                   rgb_pred: dict[int, list], decoded: list | None, columns: int, t_frame: np.ndarray,
                   dt: float) -> list:
    l1 = levels[0]
    s1 = len(l1["ends"])
    # A regular stride keeps the columns evenly spaced on the time axis.
    stride = max(1, math.ceil(s1 / max(columns, 1)))
    show = np.arange(s1 - 1, -1, -stride)[::-1]  # always show the last step
    centre = [0.5 * (l1["spans"][u][0] + l1["spans"][u][1]) for u in show]
    padded = clip.is_padded.numpy()
    rows: list = [
        ImageRow("frames", [_thumb_frame(frames, l1["ends"][u]) for u in show], centre,
                 captions=[f"{t_frame[int(l1['ends'][u])]:.2f} s" + (" (repeat)" if padded[int(l1["ends"][u])] else "")
                           for u in show]),
        ImageRow("L1 target", [rgb_target[u] for u in show], centre, pixelated=True),
    ]
    for j, maps in rgb_pred.items():
        rows.append(ImageRow(f"L1 predicted\n{j} step{'s' if j > 1 else ''} ahead", [maps[u] for u in show], centre,
                             pixelated=True, missing="no context"))
    if decoded is not None:
        rows.append(ImageRow("L1 predicted,\ndecoded", [decoded[u] for u in show], centre, missing="no context"))
    for k, lv in enumerate(levels[1:], start=2):
        tokens = lv["target"]  # [S, Q, D]
        s, _, d = tokens.shape
        proj = fit_pca(tokens.reshape(-1, d)) if tokens.reshape(-1, d).shape[0] >= 2 else None
        colors = _strip_colors(proj, tokens.mean(1))
        starts = [a for a, _ in lv["spans"]]
        stops = [b for _, b in lv["spans"]]
        rows.append(StripRow(f"L{k} target steps", starts, stops, colors, texts=[str(u) for u in range(s)]))
        h = lv["pred"].shape[1]
        for j in range(1, h + 1):
            us = [u for u in range(s) if u - j >= 0]
            if not us:
                continue
            pm = torch.stack([lv["pred"][u - j, j - 1].mean(0) for u in us])
            err = [(lv["pred"][u - j, j - 1] - tokens[u]).abs().mean().item() for u in us]
            rows.append(StripRow(f"L{k} predicted\n{j} step{'s' if j > 1 else ''} ahead", [starts[u] for u in us],
                                 [stops[u] for u in us], _strip_colors(proj, pm), texts=[f"err {e:.2f}" for e in err]))
    if clip.activity is not None:
        act = clip.activity.numpy()
        change = np.flatnonzero(np.diff(act)) + 1
        bounds = np.concatenate([[0], change, [len(act)]])
        cmap = _activity_colors()
        segs = list(zip(bounds[:-1], bounds[1:]))
        names = clip.activity_names or []
        rows.append(StripRow(
            "activity\n(ground truth)",
            [float(t_frame[a]) for a, _ in segs],
            [float(t_frame[b - 1]) + dt for _, b in segs],
            np.array([cmap[int(act[a]) % len(cmap)] for a, _ in segs]),
            texts=[names[int(act[a])] if int(act[a]) < len(names) else str(int(act[a])) for a, _ in segs],
        ))
    return rows


def _activity_colors() -> np.ndarray:
    from matplotlib import colormaps

    return np.asarray(colormaps["tab20"].colors)


def _strip_colors(proj: PCAProjector | None, emb: Tensor) -> np.ndarray:
    if proj is None:
        return np.full((len(emb), 3), 0.6)
    return proj.to_rgb(emb).numpy()


def _nearest_rows(levels: list[dict], frames: np.ndarray, t_frame: np.ndarray, dt: float,
                  neighbours: int) -> list[NearestRow]:
    rows = []
    for k, lv in enumerate(levels, start=1):
        pred, target, valid, ends = lv["pred"], lv["target"], lv["valid"], lv["ends"]
        for j in range(1, valid.shape[1] + 1):
            ctx = torch.nonzero(valid[:, j - 1]).flatten()
            if len(ctx) == 0:
                continue
            s = int(ctx[len(ctx) // 2])  # a context end in the middle of the clip
            dist = _distances(pred[s, j - 1][None], target)[0]
            dist[s] = float("inf")  # not the present step itself
            order = torch.argsort(dist)[: min(neighbours, len(dist) - 1)]
            nbrs = [Neighbour(_thumb_frame(frames, ends[u]), float(t_frame[int(ends[u])]), float(dist[u]),
                              is_true=int(u) == s + j) for u in order.tolist()]
            rank = int((dist <= dist[s + j]).sum())
            rows.append(NearestRow(
                label=f"L{k}  {j} step{'s' if j > 1 else ''} ahead\n(+{j * lv['step_frames'] * dt:.2f} s)\n"
                      f"true future: rank {rank}/{len(dist) - 1}",
                context=_thumb_frame(frames, ends[s]),
                context_time=float(t_frame[int(ends[s])]),
                truth=_thumb_frame(frames, ends[s + j]),
                truth_time=float(t_frame[int(ends[s + j])]),
                neighbours=nbrs,
                color=level_color(k),
            ))
    return rows


def _curves(summary: dict[str, Any], num_levels: int, source: str):
    err, cos = [], []
    for k in range(1, num_levels + 1):
        hs = sorted(int(key.split("/")[1][1:]) for key in summary
                    if key.startswith(f"level{k}/h") and key.endswith("/l1"))
        if not hs:
            continue
        x = [summary[f"level{k}/h{j}/horizon_s"] for j in hs]
        c = level_color(k)
        g = lambda name: [summary[f"level{k}/h{j}/{name}"] for j in hs]  # noqa: E731
        err += [
            Curve(f"level {k}", x, g("l1"), color=c),
            Curve(f"level {k} copy", x, g("copy_l1"), color=c, style="--", marker="s"),
            Curve(f"level {k} mean", x, g("mean_l1"), color=c, style="-.", marker="^"),
        ]
        cos += [
            Curve(f"level {k}", x, g("cosine"), color=c),
            Curve(f"level {k} copy", x, g("copy_cosine"), color=c, style="--", marker="s"),
        ]
    return horizon_curves_figure(
        [Panel("prediction error (lower is better)", "L1 to layer-normed target", err),
         Panel("cosine similarity (higher is better)", "cosine(prediction, target)", cos)],
        title=f"{Path(source).name}: error vs horizon, every level on one time axis",
        style_labels={"--": "copy-the-present", "-.": "mean target"},
    )


def _gif_frames(levels: list[dict], frames: np.ndarray, rgb_target: np.ndarray, rgb_pred: dict[int, list],
                decoded: list | None, t_frame: np.ndarray) -> list[np.ndarray]:
    l1 = levels[0]
    out = []
    blank = np.full_like(rgb_target[0], 0.93)
    for u in range(len(l1["ends"])):
        end = int(l1["ends"][u])
        imgs = [frames[end], rgb_target[u]]
        labels = ["frame", "target"]
        nearest = [False, True]
        for j, maps in rgb_pred.items():
            imgs.append(maps[u] if maps[u] is not None else blank)
            labels.append(f"predicted, {j} ahead")
            nearest.append(True)
        if decoded is not None:
            imgs.append(decoded[u] if decoded[u] is not None else np.full_like(frames[0], 235))
            labels.append("decoded (1 ahead)")
            nearest.append(False)
        out.append(compose_panels(imgs, labels, height=144, nearest=nearest,
                                  footer=f"t = {t_frame[end]:.2f} s   level-1 step {u}"))
    return out


def _decoded_predictions(l1: dict, frames: np.ndarray, hg: int, wg: int, model: Any, seed: int,
                         steps: int) -> tuple[list, float]:
    """Train a decoder on (target map, step's last frame) pairs; render the 1-step-ahead predictions."""
    from hjepa.viz.decoder import train_decoder

    s1, _, d = l1["target"].shape
    patch = frames.shape[1] // hg
    feats = l1["target"].reshape(s1, hg, wg, d)
    targets = np.stack([frames[int(e)] for e in l1["ends"]])[:, : hg * patch, : wg * patch]
    dec, err = train_decoder(feats, targets, patch_size=patch, steps=steps, width=64, seed=seed)
    pred = l1["pred"][:, 0].reshape(s1, hg, wg, d)  # prediction of step u+1 from context u
    rendered = dec.render(pred)
    return [None] + [rendered[u - 1] for u in range(1, s1)], float(err)


def _log_to_wandb(summary: dict[str, Any]) -> None:
    """Images to the active wandb run, if there is one (never starts a run or a network call)."""
    if (active := active_run()) is None:
        return
    wandb, run = active
    images = {f"visualize/{k[:-4]}": wandb.Image(summary[k]) for k in ("timeline_png", "nearest_png", "curves_png")}
    images["visualize/level1_gif"] = wandb.Video(summary["gif"], format="gif")
    run.log(images)
