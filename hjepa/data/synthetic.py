"""Synthetic hierarchical videos: the built-in dataset, structured at three timescales.

A new user can pretrain and see a hierarchy emerge without downloading anything. Each video is
procedural RGB (default 64x64, 128 frames, read as 8 fps), deterministic given ``seed`` and the
video's index.

The generator's grammar
-----------------------
* **Objects (nouns).** ``num_objects`` (<= 4) coloured shapes: red square, green disc, blue
  diamond, yellow cross. Positions live on a torus (``[0, 1)^2``, drawn wrapped at the borders),
  so motion never has to stop or bounce.
* **Activities (verb, noun).** An activity moves *one* object (the noun) with one motion type
  (the verb) while the others rest:
  ``slide-right``/``slide-left``/``slide-up``/``slide-down`` (constant velocity),
  ``orbit`` (a circle of radius ``orbit_radius`` turning towards the frame centre) and
  ``zigzag`` (right at constant speed, up and down in a triangle wave of period
  ``zigzag_period``). All move at ``speed`` (fraction of the frame width per frame). An activity
  lasts a uniform ``min_activity_frames``..``max_activity_frames`` frames (default 8..24); the
  next one starts on the following frame from where the objects are.
  Action id = ``verb_class * num_objects + noun_class``.
* **Recipes.** ``num_recipes`` fixed cyclic sequences of ``recipe_length`` actions (drawn once from
  ``grammar_seed``; neighbours always differ). A video picks a recipe and a starting step at
  random and follows the cycle. With probability ``deviation_prob`` a step is replaced by a random
  other action (the recipe then goes on where it was), so the activity level is predictable but
  not deterministic. An action may appear in several recipes with different successors: the
  previous activity alone does not always fix the next one, a longer history (which recipe is
  running) does.
* **New views.** With probability ``reposition_prob`` an activity starts with every object at a
  new random place, as when a head-mounted camera turns to another part of the counter. The
  positions then stop being predictable past the running activity while the activity sequence
  stays predictable: the split between short-term detail and long-term structure that a
  hierarchy of predictors is meant to exploit. Off (0) by default.
* **Distractors.** Every frame gets a fresh grey background with Gaussian pixel noise
  (``noise_std`` grey levels) and ``num_flicker_patches`` rectangles of random colour, size and
  place. They are drawn under the objects and cannot be predicted from the past.

What each level is expected to capture: level 1 (a window of ~8 frames, 1 s) the motion of the
active object, predictable frame to frame from its velocity; a level spanning several windows the
current activity (which object, which motion) and, as horizons grow, the next activities of the
recipe, predictable from the activities seen so far; nothing should try to predict the noise and
the patches, which a JEPA can ignore because it predicts in representation space.

Ground truth
------------
Per frame: ``activity`` (action id) and ``positions`` (object centres ``(x, y)`` in [0, 1),
x to the right, y downwards). Per segment, the EPIC-KITCHENS-100 annotation columns
(:data:`EPIC_COLUMNS`): ``verb``/``verb_class`` = motion type, ``noun``/``noun_class`` = the
moved object, ``start_frame``/``stop_frame`` inclusive and 0-based, timestamps ``frame / fps``
written ``HH:MM:SS.fff`` (exact at 8 fps). The manifest label of a video is its recipe id.

Videos ``0 .. num_train_videos-1`` form the training split, the next ``num_val_videos`` the
validation split; both use the same grammar.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

VERBS = ("slide-right", "slide-left", "slide-up", "slide-down", "orbit", "zigzag")
NOUNS = ("red-square", "green-disc", "blue-diamond", "yellow-cross")
COLOURS = np.array([(230, 40, 40), (40, 200, 60), (50, 90, 240), (240, 220, 40)], dtype=np.uint8)
EPIC_COLUMNS = (
    "narration_id",
    "participant_id",
    "video_id",
    "narration_timestamp",
    "start_timestamp",
    "stop_timestamp",
    "start_frame",
    "stop_frame",
    "narration",
    "verb",
    "verb_class",
    "noun",
    "noun_class",
    "all_nouns",
    "all_noun_classes",
)
SPLITS = ("train", "validation")


@dataclass
class SyntheticConfig:
    """Parameters of the synthetic hierarchical dataset (defaults sized for a tiny CPU model).

    Args:
        seed: seed of the videos (recipe choice, timing, noise); same seed -> same pixels.
        grammar_seed: seed of the recipes (shared by both splits).
        num_train_videos: videos in the training split.
        num_val_videos: videos in the validation split.
        frames_per_video: frames of every video.
        resolution: frame height and width in pixels.
        fps: frame rate the videos are read at (and written with).
        num_objects: coloured shapes in the scene (1..4); also the number of noun classes.
        num_recipes: recipes (activity sequences) in the grammar.
        recipe_length: activities per recipe cycle.
        min_activity_frames: shortest activity, in frames.
        max_activity_frames: longest activity, in frames.
        deviation_prob: chance that a recipe step is replaced by a random action.
        reposition_prob: chance that an activity (other than a video's first) starts with every
            object moved to a new random place (a new view).
        speed: object speed, fraction of the frame width per frame.
        object_size: object half-size, fraction of the frame width.
        orbit_radius: radius of ``orbit``, fraction of the frame width.
        zigzag_period: frames of one up-and-down cycle of ``zigzag``.
        noise_std: standard deviation of the background pixel noise, in grey levels.
        num_flicker_patches: random-colour rectangles drawn anew in every frame.
    """

    seed: int = 0
    grammar_seed: int = 0
    num_train_videos: int = 256
    num_val_videos: int = 64
    frames_per_video: int = 128
    resolution: int = 64
    fps: float = 8.0
    num_objects: int = 4
    num_recipes: int = 6
    recipe_length: int = 6
    min_activity_frames: int = 8
    max_activity_frames: int = 24
    deviation_prob: float = 0.1
    reposition_prob: float = 0.0
    speed: float = 0.025
    object_size: float = 0.08
    orbit_radius: float = 0.14
    zigzag_period: int = 8
    noise_std: float = 10.0
    num_flicker_patches: int = 3

    def __post_init__(self) -> None:
        checks = [
            ("num_objects", 1 <= self.num_objects <= len(NOUNS), f"must be in 1..{len(NOUNS)}"),
            ("num_train_videos", self.num_train_videos >= 0, "must be >= 0"),
            ("num_val_videos", self.num_val_videos >= 0, "must be >= 0"),
            ("frames_per_video", self.frames_per_video >= 1, "must be >= 1"),
            ("resolution", self.resolution >= 8, "must be >= 8"),
            ("fps", self.fps > 0, "must be > 0"),
            ("num_recipes", self.num_recipes >= 1, "must be >= 1"),
            ("recipe_length", self.recipe_length >= 2, "must be >= 2"),
            ("min_activity_frames", self.min_activity_frames >= 1, "must be >= 1"),
            ("max_activity_frames", self.max_activity_frames >= self.min_activity_frames,
             "must be >= min_activity_frames"),
            ("deviation_prob", 0.0 <= self.deviation_prob <= 1.0, "must be in [0, 1]"),
            ("reposition_prob", 0.0 <= self.reposition_prob <= 1.0, "must be in [0, 1]"),
            ("zigzag_period", self.zigzag_period >= 2, "must be >= 2"),
            ("noise_std", self.noise_std >= 0, "must be >= 0"),
            ("num_flicker_patches", self.num_flicker_patches >= 0, "must be >= 0"),
        ]
        for key, ok, why in checks:
            if not ok:
                raise ValueError(f"SyntheticConfig.{key}={getattr(self, key)!r}: {why}")

    @property
    def num_actions(self) -> int:
        return len(VERBS) * self.num_objects


@dataclass(frozen=True)
class ActivitySpan:
    """One activity of a video: frames ``start..stop`` inclusive."""

    start: int
    stop: int
    verb: int
    noun: int
    action: int


@dataclass
class SyntheticVideo:
    """Ground truth of one video (pixels are rendered on demand by :meth:`SyntheticVideos.render`).

    activity: int64 [N] action id per frame; positions: float32 [N, num_objects, 2] (x, y) in [0, 1).
    """

    index: int
    video_id: str
    split: str
    recipe: int
    activity: np.ndarray
    positions: np.ndarray
    segments: list[ActivitySpan] = field(default_factory=list)


def make_recipes(cfg: SyntheticConfig) -> list[list[int]]:
    """The grammar: ``num_recipes`` cycles of ``recipe_length`` action ids (neighbours differ)."""
    rng = np.random.default_rng([cfg.grammar_seed, 7])
    n = cfg.num_actions
    recipes: list[list[int]] = []
    for _ in range(cfg.num_recipes):
        seq = [int(a) for a in rng.integers(0, n, cfg.recipe_length)]
        for i in range(1, len(seq)):  # one pass, no retry loop: shift a repeat to the next id
            if seq[i] == seq[i - 1]:
                seq[i] = (seq[i] + 1) % n
        if seq[-1] == seq[0]:
            seq[-1] = (seq[-1] + 1) % n
            if seq[-1] == seq[-2]:
                seq[-1] = (seq[-1] + 1) % n
        recipes.append(seq)
    return recipes


def action_of(verb: int, noun: int, num_objects: int) -> int:
    return verb * num_objects + noun


def verb_noun_of(action: int, num_objects: int) -> tuple[int, int]:
    return action // num_objects, action % num_objects


class SyntheticVideos:
    """All videos of both splits of one :class:`SyntheticConfig`, generated on demand.

    ``video(i)`` builds the ground truth (a few hundred microseconds), ``render(i, frames)`` draws
    the asked frames only. Global index ``i``: train videos first, then validation.
    """

    def __init__(self, config: SyntheticConfig | None = None) -> None:
        self.config = config or SyntheticConfig()
        self.recipes = make_recipes(self.config)
        r = self.config.resolution
        # Pixel-centre coordinates in [0, 1), x to the right, y downwards.
        self._grid = (np.arange(r, dtype=np.float32) + 0.5) / r

    def __len__(self) -> int:
        return self.config.num_train_videos + self.config.num_val_videos

    def split_range(self, split: str) -> range:
        c = self.config
        if split == "train":
            return range(0, c.num_train_videos)
        if split in ("val", "validation"):
            return range(c.num_train_videos, c.num_train_videos + c.num_val_videos)
        raise ValueError(f"split={split!r}: must be 'train' or 'validation'")

    def video_id(self, index: int) -> str:
        return f"syn_{index:05d}"

    # -- ground truth -------------------------------------------------------------------
    def video(self, index: int) -> SyntheticVideo:
        """Ground truth of video ``index`` (deterministic given the config's seed)."""
        c = self.config
        if not 0 <= index < len(self):
            raise IndexError(f"video {index} outside 0..{len(self) - 1}")
        rng = np.random.default_rng([c.seed, index, 0])
        views = np.random.default_rng([c.seed, index, 2])
        n_frames = c.frames_per_video
        recipe = int(rng.integers(c.num_recipes))
        seq = self.recipes[recipe]
        step = int(rng.integers(len(seq)))
        pos = rng.uniform(0.15, 0.85, size=(c.num_objects, 2))
        positions = np.empty((n_frames, c.num_objects, 2), dtype=np.float64)
        activity = np.empty(n_frames, dtype=np.int64)
        segments: list[ActivitySpan] = []
        t, prev = 0, -1
        while t < n_frames:  # ends: t grows by >= 1 per activity
            action = seq[step % len(seq)]
            if rng.random() < c.deviation_prob:
                other = int(rng.integers(c.num_actions - 1))
                action = other + (other >= action)  # a random action other than the recipe's
            if action == prev:  # a deviation may repeat the previous activity: take the next id
                action = (action + 1) % c.num_actions
            step += 1
            length = int(rng.integers(c.min_activity_frames, c.max_activity_frames + 1))
            stop = min(t + length, n_frames) - 1
            # A stream of its own: with or without new views, a video has the same activities.
            if t > 0 and c.reposition_prob > 0 and views.random() < c.reposition_prob:
                pos = views.uniform(0.15, 0.85, size=(c.num_objects, 2))
            verb, noun = verb_noun_of(action, c.num_objects)
            path = self._trajectory(verb, pos[noun], stop - t + 1)  # [L, 2]
            positions[t : stop + 1] = pos
            positions[t : stop + 1, noun] = path
            pos = positions[stop].copy()
            activity[t : stop + 1] = action
            segments.append(ActivitySpan(t, stop, verb, noun, action))
            t, prev = stop + 1, action
        split = "train" if index < c.num_train_videos else "validation"
        return SyntheticVideo(
            index, self.video_id(index), split, recipe, activity,
            positions.astype(np.float32), segments,
        )

    def _trajectory(self, verb: int, p0: np.ndarray, length: int) -> np.ndarray:
        """Positions after 1..length frames of motion ``verb`` from ``p0``: [length, 2] in [0, 1)."""
        c = self.config
        k = np.arange(1, length + 1, dtype=np.float64)[:, None]
        name = VERBS[verb]
        if name.startswith("slide"):
            d = {"slide-right": (1, 0), "slide-left": (-1, 0), "slide-up": (0, -1), "slide-down": (0, 1)}[name]
            p = p0 + c.speed * k * np.array(d, dtype=np.float64)
        elif name == "orbit":
            # Centre one radius towards the frame centre; the angle grows at speed / radius.
            u = np.array([0.5, 0.5]) - p0
            norm = float(np.hypot(*u))
            u = u / norm if norm > 1e-6 else np.array([1.0, 0.0])
            centre = p0 + c.orbit_radius * u
            a0 = math.atan2(p0[1] - centre[1], p0[0] - centre[0])
            a = a0 + (c.speed / c.orbit_radius) * k[:, 0]
            p = centre + c.orbit_radius * np.stack([np.cos(a), np.sin(a)], axis=1)
        else:  # zigzag: steady to the right, triangle wave up and down
            period = c.zigzag_period
            phase = (k[:, 0] % period) / period
            tri = np.where(phase < 0.5, phase, 1.0 - phase) * period  # frames, 0..period/2
            p = np.stack([p0[0] + c.speed * k[:, 0], p0[1] - c.speed * tri], axis=1)
        return np.mod(p, 1.0)

    # -- pixels -------------------------------------------------------------------------
    def render(
        self, index: int, frames: Sequence[int] | None = None, video: SyntheticVideo | None = None
    ) -> np.ndarray:
        """Draw frames of video ``index``: uint8 [T, H, W, 3] (all frames when ``frames`` is None).

        ``video``: the ground truth of ``index`` if already built (saves rebuilding it).
        """
        c = self.config
        v = video if video is not None else self.video(index)
        idx = np.arange(c.frames_per_video) if frames is None else np.asarray(frames, dtype=np.int64)
        r = c.resolution
        canvas = np.empty((len(idx), r, r, 3), dtype=np.uint8)
        for j, t in enumerate(idx):  # the background depends on (seed, video, frame) only
            canvas[j] = self._background(index, int(t))
        pos = v.positions[idx]  # [T, N, 2]
        active = verb_noun_of(v.activity[idx], c.num_objects)[1]  # [T] noun moving in each frame
        # Wrapped offsets from every object centre, in pixels: [T, N, H] and [T, N, W].
        dx = (np.mod(self._grid[None, None, :] - pos[:, :, 0:1] + 0.5, 1.0) - 0.5) * r
        dy = (np.mod(self._grid[None, None, :] - pos[:, :, 1:2] + 0.5, 1.0) - 0.5) * r
        ax, ay = np.abs(dx)[:, :, None, :], np.abs(dy)[:, :, :, None]  # [T, N, 1, W], [T, N, H, 1]
        s = c.object_size * r
        masks = np.zeros((len(idx), c.num_objects, r, r), dtype=bool)
        for n in range(c.num_objects):
            shape = n % 4
            if shape == 0:  # square
                m = (ax[:, n] <= s) & (ay[:, n] <= s)
            elif shape == 1:  # disc
                m = ax[:, n] ** 2 + ay[:, n] ** 2 <= (s * 1.15) ** 2
            elif shape == 2:  # diamond
                m = ax[:, n] + ay[:, n] <= s * 1.5
            else:  # cross
                m = ((ax[:, n] <= s / 2.5) & (ay[:, n] <= s * 1.2)) | ((ay[:, n] <= s / 2.5) & (ax[:, n] <= s * 1.2))
            masks[:, n] = m
        # The resting objects in noun order, then the moving one on top.
        t_idx = np.arange(len(idx))
        for n in range(c.num_objects):
            m = masks[:, n] & (active != n)[:, None, None]
            canvas[m] = COLOURS[n]
        m = masks[t_idx, active]  # [T, H, W]
        canvas[m] = COLOURS[np.broadcast_to(active[:, None, None], m.shape)[m]]
        return canvas

    def _background(self, index: int, t: int) -> np.ndarray:
        c = self.config
        r = c.resolution
        rng = np.random.default_rng([c.seed, index, 1, t])
        bg = np.full((r, r, 3), 110.0, dtype=np.float32)
        if c.noise_std > 0:
            bg += rng.standard_normal((r, r, 3), dtype=np.float32) * np.float32(c.noise_std)
        bg = np.clip(bg, 0, 255).astype(np.uint8)
        for _ in range(c.num_flicker_patches):
            h, w = rng.integers(max(1, r // 20), max(2, r // 8) + 1, size=2)
            y, x = rng.integers(0, r - h + 1), rng.integers(0, r - w + 1)
            bg[y : y + h, x : x + w] = rng.integers(0, 256, size=3, dtype=np.uint8)
        return bg

    # -- annotations --------------------------------------------------------------------
    def annotation_rows(self, video: SyntheticVideo) -> list[dict[str, Any]]:
        """The video's segments as EPIC-KITCHENS-100 annotation rows (see :data:`EPIC_COLUMNS`)."""
        fps = self.config.fps
        rows = []
        for k, s in enumerate(video.segments):
            verb, noun = VERBS[s.verb], NOUNS[s.noun]
            rows.append({
                "narration_id": f"{video.video_id}_{k}",
                "participant_id": "SYN",
                "video_id": video.video_id,
                "narration_timestamp": format_timestamp(s.start / fps),
                "start_timestamp": format_timestamp(s.start / fps),
                "stop_timestamp": format_timestamp(s.stop / fps),
                "start_frame": s.start,
                "stop_frame": s.stop,
                "narration": f"{verb} {noun}",
                "verb": verb,
                "verb_class": s.verb,
                "noun": noun,
                "noun_class": s.noun,
                "all_nouns": str([noun]),
                "all_noun_classes": str([s.noun]),
            })
        return rows


def format_timestamp(seconds: float) -> str:
    """``HH:MM:SS.fff`` (EPIC's layout, with millisecond precision)."""
    ms = int(round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any] | dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in rows:
            w.writerow([row[h] for h in header] if isinstance(row, dict) else row)


def encode_video(
    path: str | os.PathLike, frames: np.ndarray, fps: float, crf: int = 18, preset: str = "veryfast"
) -> None:
    """Write uint8 [T, H, W, 3] frames as H.264 (yuv420p) with PyAV."""
    import av  # noqa: PLC0415
    from fractions import Fraction  # noqa: PLC0415

    t, h, w, _ = frames.shape
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_synthetic_dataset(
    out_dir: str | os.PathLike,
    config: SyntheticConfig | None = None,
    crf: int = 18,
    preset: str = "veryfast",
) -> dict[str, str]:
    """Write the dataset to ``out_dir`` as real video files plus manifests and annotations.

    Layout (the same file names as ``datasets/epic_kitchens_100/make_manifest.py`` writes)::

        videos/syn_00000.mp4 ...           H.264 yuv420p, config.fps, config.resolution^2
        manifest_train.csv                 path,label (label = recipe id), paths relative
        manifest_validation.csv
        annotations_train.csv              EPIC-KITCHENS-100 columns, one row per activity
        annotations_validation.csv
        video_info.csv                     video_id,duration,fps,resolution (EPIC's columns)
        verb_classes.csv, noun_classes.csv id,key,instances,category (EPIC's columns)
        actions.csv                        id,verb,noun,action (action id = verb*num_objects+noun)
        frame_labels_train.csv             video_id,frame,activity,verb_class,noun_class,x0,y0,...
        frame_labels_validation.csv
        grammar.json                       config, recipes, verbs, nouns

    A video's ``video_id`` is its file stem. Returns {name: path} of what was written.
    """
    cfg = config or SyntheticConfig()
    gen = SyntheticVideos(cfg)
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {"videos": str(out / "videos")}
    info_rows = []
    res = f"{cfg.resolution}x{cfg.resolution}"
    for split in SPLITS:
        manifest, notes, frames_rows = [], [], []
        for i in gen.split_range(split):
            v = gen.video(i)
            path = out / "videos" / f"{v.video_id}.mp4"
            encode_video(path, gen.render(i, video=v), cfg.fps, crf, preset)
            manifest.append([f"videos/{v.video_id}.mp4", v.recipe])
            notes.extend(gen.annotation_rows(v))
            info_rows.append([v.video_id, f"{cfg.frames_per_video / cfg.fps:.6f}", cfg.fps, res])
            for t in range(cfg.frames_per_video):
                verb, noun = verb_noun_of(int(v.activity[t]), cfg.num_objects)
                xy = [f"{x:.5f}" for x in v.positions[t].reshape(-1)]
                frames_rows.append([v.video_id, t, int(v.activity[t]), verb, noun, *xy])
        for name, header, rows in (
            (f"manifest_{split}.csv", ["path", "label"], manifest),
            (f"annotations_{split}.csv", EPIC_COLUMNS, notes),
            (
                f"frame_labels_{split}.csv",
                ["video_id", "frame", "activity", "verb_class", "noun_class"]
                + [f"{a}{n}" for n in range(cfg.num_objects) for a in ("x", "y")],
                frames_rows,
            ),
        ):
            _write_csv(out / name, header, rows)
            written[name.removesuffix(".csv")] = str(out / name)
    _write_csv(out / "video_info.csv", ["video_id", "duration", "fps", "resolution"], info_rows)
    _write_csv(
        out / "verb_classes.csv", ["id", "key", "instances", "category"],
        [[i, v, str([v]), "motion"] for i, v in enumerate(VERBS)],
    )
    _write_csv(
        out / "noun_classes.csv", ["id", "key", "instances", "category"],
        [[i, n, str([n]), "shape"] for i, n in enumerate(NOUNS[: cfg.num_objects])],
    )
    _write_csv(
        out / "actions.csv", ["id", "verb", "noun", "action"],
        [[action_of(v, n, cfg.num_objects), v, n, f"{VERBS[v]} {NOUNS[n]}"]
         for v in range(len(VERBS)) for n in range(cfg.num_objects)],
    )
    with open(out / "grammar.json", "w") as f:
        json.dump(
            {"config": asdict(cfg), "recipes": gen.recipes, "verbs": list(VERBS),
             "nouns": list(NOUNS[: cfg.num_objects])},
            f, indent=2,
        )
    for name in ("video_info", "verb_classes", "noun_classes", "actions"):
        written[name] = str(out / f"{name}.csv")
    written["grammar"] = str(out / "grammar.json")
    return written
