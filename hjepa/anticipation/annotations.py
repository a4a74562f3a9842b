"""Action annotations for anticipation: readers, per-video fps and the action vocabulary.

Three CSV layouts are read into the same :class:`Segment` records:

``epic``
    The EPIC-KITCHENS-100 columns (``narration_id, participant_id, video_id, narration_timestamp,
    start_timestamp, stop_timestamp, start_frame, stop_frame, narration, verb, verb_class, noun,
    noun_class, all_nouns, all_noun_classes``); the synthetic generator writes the same columns.
    Only ``video_id``, the start/stop times (timestamps or frames) and ``verb_class`` /
    ``noun_class`` are required; ``narration_id`` falls back to ``<video_id>_<row>``.
``rulstm``
    The header-less RULSTM anticipation split: ``narration_id, video_id, start_frame, stop_frame,
    verb, noun, action``, frames counted at a fixed 30 fps (``frame_fps``).
``generic``
    A header ``video,start,stop,label``: times in seconds, any label string; an optional
    ``uid`` column names the segment.

Times. A segment's times are kept in **seconds** so that windows can be placed in any video at
its own fps. For ``epic`` files the default ``time_source="timestamp"`` reads
``start_timestamp``/``stop_timestamp``: the official ``start_frame`` columns count frames of the
*extracted* RGB frames, which are at 60 fps for every EPIC-55 recording, whatever the MP4's fps
(59.94, 29.97, 47.95 or 90 in ``EPIC_100_video_info.csv``), and 50 fps for the extension videos.
``time_source="frame"`` divides the frame columns by ``frame_fps`` or, when that is not given,
by the video's fps from the video-info table.

Action classes are the (verb, noun) pairs seen in the training annotations (or the labels, for
the generic layout); validation segments whose pair was never seen are counted by
:func:`keep_known` and scored as action misses (``protocol.py``, as the challenge does).

Reference figures on the real files (``../shared/data/epic100``), checked by the tests:

* ``EPIC_100_validation.csv``: 9,668 segments, 138 videos, 32 participants, 78 verb classes,
  211 noun classes, 1,352 (verb, noun) pairs.
* with ``rulstm_ek100/training.csv`` (all 67,217 EK-100 training segments, 3,568 pairs) as the
  training vocabulary: 238 validation pairs unseen, in 372 validation segments.
* with ``EPIC_100_uda_source_train.csv`` (16,115 segments of the EPIC-55 recordings, 1,663
  pairs): 516 validation pairs unseen, in 977 segments.
* with ``tau_a = 1 s``, 27 validation actions start before 1 s and have nothing observable.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

AnnotationFormat = Literal["auto", "epic", "rulstm", "generic"]
TimeSource = Literal["timestamp", "frame"]

EPIC_REQUIRED = ("video_id", "verb_class", "noun_class")
GENERIC_REQUIRED = ("video", "start", "stop", "label")
RULSTM_FPS = 30.0


@dataclass(frozen=True)
class Segment:
    """One annotated action.

    ``verb``/``noun`` are class ids (-1 in the generic layout); ``label`` is the action's name in
    the vocabulary: ``"verb,noun"`` for EPIC-style rows, the label string otherwise.
    """

    uid: str
    video_id: str
    start_s: float
    stop_s: float
    verb: int = -1
    noun: int = -1
    label: str = ""
    participant_id: str = ""

    @property
    def has_verb_noun(self) -> bool:
        return self.verb >= 0 and self.noun >= 0


@dataclass(frozen=True)
class VideoTiming:
    """Per-video metadata from ``EPIC_100_video_info.csv`` (or the synthetic equivalent)."""

    video_id: str
    fps: float
    duration_s: float = math.inf

    @property
    def num_frames(self) -> int | None:
        """Frames in the video, or None when its duration is unknown."""
        if math.isinf(self.duration_s):
            return None
        return max(1, int(math.floor(self.duration_s * self.fps + 1e-6)))


class AnnotationError(ValueError):
    """A CSV that cannot be read as annotations; the message names the file and row."""


def parse_timestamp(text: str) -> float:
    """``HH:MM:SS.ff`` (or ``MM:SS.ff`` / plain seconds) -> seconds.

    >>> parse_timestamp("00:01:02.50")
    62.5
    """
    parts = text.strip().split(":")
    if not parts or len(parts) > 3 or any(p == "" for p in parts):
        raise ValueError(f"not a timestamp: {text!r}")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60.0 + float(part)
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"not a timestamp: {text!r}")
    return seconds


def _open_rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise AnnotationError(f"annotation file not found: {path}")
    with path.open(newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row and any(c.strip() for c in row)]
    if not rows:
        raise AnnotationError(f"{path}: the file is empty")
    return rows


def detect_format(path: str | Path) -> Literal["epic", "rulstm", "generic"]:
    """Guess the layout from the first row: EPIC header, generic header, or RULSTM numbers."""
    path = Path(path)
    header = [c.strip() for c in _open_rows(path)[0]]
    if set(EPIC_REQUIRED) <= set(header):
        return "epic"
    if set(GENERIC_REQUIRED) <= set(header):
        return "generic"
    if len(header) == 7 and all(_is_int(c) for c in header[2:]):
        return "rulstm"
    raise AnnotationError(
        f"{path}: cannot tell the layout from the first row {header[:8]}; expected an EPIC header "
        f"with {list(EPIC_REQUIRED)}, a generic header {list(GENERIC_REQUIRED)}, or a header-less "
        "RULSTM row of 7 fields"
    )


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_epic_csv(
    path: str | Path,
    time_source: TimeSource = "timestamp",
    frame_fps: float | None = None,
    video_info: dict[str, VideoTiming] | None = None,
) -> list[Segment]:
    """Read EPIC-KITCHENS-100 columns (also the synthetic generator's CSV).

    ``time_source="timestamp"`` uses ``start_timestamp``/``stop_timestamp``; ``"frame"`` uses
    ``start_frame``/``stop_frame`` divided by ``frame_fps`` or, if None, the video's own fps.
    """
    path = Path(path)
    rows = _open_rows(path)
    header = [c.strip() for c in rows[0]]
    col = {name: i for i, name in enumerate(header)}
    missing = [c for c in EPIC_REQUIRED if c not in col]
    time_cols = ("start_timestamp", "stop_timestamp") if time_source == "timestamp" else ("start_frame", "stop_frame")
    missing += [c for c in time_cols if c not in col]
    if missing:
        raise AnnotationError(f"{path}: missing column(s) {missing} (header: {header})")
    if time_source == "frame" and frame_fps is None and video_info is None:
        raise AnnotationError(f"{path}: time_source='frame' needs frame_fps or a video-info table")
    segments = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise AnnotationError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
        get = lambda name: row[col[name]].strip()  # noqa: E731
        video_id = get("video_id")
        try:
            verb, noun = int(get("verb_class")), int(get("noun_class"))
            if time_source == "timestamp":
                start_s, stop_s = parse_timestamp(get("start_timestamp")), parse_timestamp(get("stop_timestamp"))
            else:
                fps = frame_fps if frame_fps is not None else _video_fps(video_info, video_id, path, line)
                start_s, stop_s = int(get("start_frame")) / fps, int(get("stop_frame")) / fps
        except ValueError as err:
            raise AnnotationError(f"{path}, line {line}: {err}") from None
        if verb < 0 or noun < 0:
            raise AnnotationError(f"{path}, line {line}: negative class id (verb {verb}, noun {noun})")
        uid = get("narration_id") if "narration_id" in col else f"{video_id}_{line - 2}"
        participant = get("participant_id") if "participant_id" in col else video_id.split("_")[0]
        segments.append(Segment(uid, video_id, start_s, stop_s, verb, noun, f"{verb},{noun}", participant))
    return segments


def _video_fps(video_info: dict[str, VideoTiming] | None, video_id: str, path: Path, line: int) -> float:
    if video_info is None or video_id not in video_info:
        raise ValueError(f"video {video_id!r} is not in the video-info table, so its frames cannot be timed")
    return video_info[video_id].fps


def read_rulstm_csv(path: str | Path, frame_fps: float | None = None) -> list[Segment]:
    """Read a header-less RULSTM split (``uid, video, start_frame, stop_frame, verb, noun, action``)."""
    path = Path(path)
    fps = RULSTM_FPS if frame_fps is None else frame_fps
    segments = []
    for line, row in enumerate(_open_rows(path), start=1):
        if len(row) != 7:
            raise AnnotationError(f"{path}, line {line}: {len(row)} fields, a RULSTM row has 7")
        try:
            start, stop, verb, noun = (int(x) for x in row[2:6])
        except ValueError as err:
            raise AnnotationError(f"{path}, line {line}: {err}") from None
        uid, video_id = row[0].strip(), row[1].strip()
        participant = video_id.split("_")[0]
        segments.append(Segment(uid, video_id, start / fps, stop / fps, verb, noun, f"{verb},{noun}", participant))
    return segments


def read_generic_csv(path: str | Path) -> list[Segment]:
    """Read ``video,start,stop,label`` (seconds; optional ``uid`` column)."""
    path = Path(path)
    rows = _open_rows(path)
    header = [c.strip() for c in rows[0]]
    col = {name: i for i, name in enumerate(header)}
    missing = [c for c in GENERIC_REQUIRED if c not in col]
    if missing:
        raise AnnotationError(f"{path}: missing column(s) {missing} (header: {header})")
    segments = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise AnnotationError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
        try:
            start_s, stop_s = float(row[col["start"]]), float(row[col["stop"]])
        except ValueError as err:
            raise AnnotationError(f"{path}, line {line}: {err}") from None
        if not (math.isfinite(start_s) and start_s >= 0):
            raise AnnotationError(f"{path}, line {line}: start {start_s} is not a time in seconds >= 0")
        label = row[col["label"]].strip()
        if not label:
            raise AnnotationError(f"{path}, line {line}: empty label")
        video_id = row[col["video"]].strip()
        uid = row[col["uid"]].strip() if "uid" in col else f"{video_id}_{line - 2}"
        segments.append(Segment(uid, video_id, start_s, stop_s, label=label))
    return segments


def read_annotations(
    path: str | Path,
    format: AnnotationFormat = "auto",
    time_source: TimeSource = "timestamp",
    frame_fps: float | None = None,
    video_info: dict[str, VideoTiming] | None = None,
) -> list[Segment]:
    """Read any supported layout (see the module docstring); ``format="auto"`` detects it."""
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "epic":
        segments = read_epic_csv(path, time_source, frame_fps, video_info)
    elif fmt == "rulstm":
        segments = read_rulstm_csv(path, frame_fps)
    elif fmt == "generic":
        segments = read_generic_csv(path)
    else:
        raise AnnotationError(f"unknown annotation format {format!r}; use auto, epic, rulstm or generic")
    if not segments:
        raise AnnotationError(f"{path}: no segments")
    dup = [uid for uid, n in Counter(s.uid for s in segments).items() if n > 1]
    if dup:
        raise AnnotationError(f"{path}: {len(dup)} duplicated segment ids, e.g. {dup[:3]}")
    return segments


def read_video_info(path: str | Path) -> dict[str, VideoTiming]:
    """``video_id,duration,fps[,resolution]`` -> {video_id: VideoTiming}."""
    path = Path(path)
    rows = _open_rows(path)
    header = [c.strip() for c in rows[0]]
    col = {name: i for i, name in enumerate(header)}
    if "video_id" not in col or "fps" not in col:
        raise AnnotationError(f"{path}: a video-info table needs 'video_id' and 'fps' columns (header: {header})")
    table = {}
    for line, row in enumerate(rows[1:], start=2):
        try:
            fps = float(row[col["fps"]])
            duration = float(row[col["duration"]]) if "duration" in col else math.inf
        except (ValueError, IndexError) as err:
            raise AnnotationError(f"{path}, line {line}: {err}") from None
        if not (fps > 0 and math.isfinite(fps)):
            raise AnnotationError(f"{path}, line {line}: fps {fps} is not a positive number")
        video_id = row[col["video_id"]].strip()
        table[video_id] = VideoTiming(video_id, fps, duration)
    return table


def read_class_names(path: str | Path) -> list[str]:
    """EPIC class file (``id,key,instances,category``) -> names indexed by id (ids must be 0..C-1)."""
    path = Path(path)
    rows = _open_rows(path)
    header = [c.strip() for c in rows[0]]
    if header[:2] != ["id", "key"]:
        raise AnnotationError(f"{path}: a class file starts with the columns 'id,key' (header: {header})")
    names: dict[int, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        try:
            names[int(row[0])] = row[1].strip()
        except (ValueError, IndexError) as err:
            raise AnnotationError(f"{path}, line {line}: {err}") from None
    if sorted(names) != list(range(len(names))):
        raise AnnotationError(f"{path}: class ids are not 0..{len(names) - 1}")
    return [names[i] for i in range(len(names))]


@dataclass
class ActionVocab:
    """Output classes of the anticipation head.

    ``outputs`` is ``("verb", "noun", "action")`` for verb/noun annotations and ``("action",)``
    for generic labels. ``actions[i]`` is the label of action class i (``"verb,noun"`` or the
    generic string), ordered by (verb, noun) or by name.
    """

    outputs: tuple[str, ...]
    num_verbs: int
    num_nouns: int
    actions: list[str]
    action_index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.action_index = {name: i for i, name in enumerate(self.actions)}

    @property
    def num_classes(self) -> dict[str, int]:
        """Classes per output, in ``outputs`` order."""
        sizes = {"verb": self.num_verbs, "noun": self.num_nouns, "action": len(self.actions)}
        return {name: sizes[name] for name in self.outputs}

    def action_pairs(self) -> list[tuple[int, int]]:
        """(verb, noun) of every action class (verb/noun vocabularies only)."""
        if "verb" not in self.outputs:
            raise ValueError("a generic-label vocabulary has no (verb, noun) pairs")
        return [tuple(int(x) for x in a.split(",")) for a in self.actions]  # type: ignore[misc]

    def targets(self, segment: Segment) -> dict[str, int] | None:
        """Class index per output, or None when the segment's action is not in the vocabulary."""
        action = self.action_index.get(segment.label)
        if action is None:
            return None
        if "verb" in self.outputs:
            if not (0 <= segment.verb < self.num_verbs and 0 <= segment.noun < self.num_nouns):
                return None
            return {"verb": segment.verb, "noun": segment.noun, "action": action}
        return {"action": action}

    def to_dict(self) -> dict:
        return {"outputs": list(self.outputs), "num_verbs": self.num_verbs, "num_nouns": self.num_nouns,
                "actions": self.actions}

    @classmethod
    def from_dict(cls, data: dict) -> "ActionVocab":
        return cls(tuple(data["outputs"]), int(data["num_verbs"]), int(data["num_nouns"]), list(data["actions"]))


def build_vocab(
    train: Sequence[Segment],
    num_verbs: int | None = None,
    num_nouns: int | None = None,
) -> ActionVocab:
    """Action classes = the pairs (or labels) seen in ``train``.

    ``num_verbs``/``num_nouns`` come from the class files when given (97 / 300 for EPIC-100, so
    ids index the official classes); otherwise they are 1 + the largest id seen in training.
    """
    if not train:
        raise ValueError("no training segments to build the action vocabulary from")
    with_vn = [s.has_verb_noun for s in train]
    if all(with_vn):
        pairs = sorted({(s.verb, s.noun) for s in train})
        nv = max(v for v, _ in pairs) + 1 if num_verbs is None else num_verbs
        nn_ = max(n for _, n in pairs) + 1 if num_nouns is None else num_nouns
        bad = [(v, n) for v, n in pairs if v >= nv or n >= nn_]
        if bad:
            raise ValueError(f"training pairs {bad[:5]} exceed the class files ({nv} verbs, {nn_} nouns)")
        return ActionVocab(("verb", "noun", "action"), nv, nn_, [f"{v},{n}" for v, n in pairs])
    if any(with_vn):
        raise ValueError("training annotations mix verb/noun rows and generic labels")
    return ActionVocab(("action",), 0, 0, sorted({s.label for s in train}))


@dataclass(frozen=True)
class KeepReport:
    """What :func:`keep_known` dropped: segments and distinct actions unseen in training."""

    kept: int
    dropped_segments: int
    dropped_actions: int


def keep_known(segments: Iterable[Segment], vocab: ActionVocab) -> tuple[list[Segment], list[Segment], KeepReport]:
    """Split segments into (known action, unseen action) and count the unseen."""
    kept, dropped = [], []
    for s in segments:
        (kept if vocab.targets(s) is not None else dropped).append(s)
    report = KeepReport(len(kept), len(dropped), len({s.label for s in dropped}))
    return kept, dropped, report
