"""Write manifests and annotation CSVs for EPIC-KITCHENS-100 from the official annotation files.

    python datasets/epic_kitchens_100/make_manifest.py --annotations epic-kitchens-100-annotations \
        --videos EPIC-KITCHENS --out EPIC100

Reads ``EPIC_100_train.csv``, ``EPIC_100_validation.csv``, ``EPIC_100_video_info.csv``,
``EPIC_100_verb_classes.csv`` and ``EPIC_100_noun_classes.csv`` and writes to ``--out``:

* ``manifest_train.csv``, ``manifest_validation.csv``: ``path,label`` with one row per video
  (label -1), for pretraining; a video's file stem is its ``video_id``. Videos absent from
  ``--videos`` are left out and counted unless ``--keep-missing``.
* ``annotations_train.csv``, ``annotations_validation.csv``: the 15 official columns, one row per
  action segment, as published. Note: the official ``start_frame``/``stop_frame`` count the
  extracted RGB frames, not the MP4's: for the EPIC-55 recordings (``PXX_YY``) they are
  ``floor(timestamp * 60)`` whatever the MP4's fps (checked on the validation file, all EPIC-55:
  97.7 % of rows exactly, also for its 29.97, 47.95 and 90 fps videos); the extension's videos
  (``PXX_1YY``, all 50 fps) had their frames extracted at 50 fps. To index a decoded video, use
  ``timestamp * fps`` with the fps of ``video_info.csv``.
* ``video_info.csv``, ``verb_classes.csv``, ``noun_classes.csv``: copies of the official files.
* ``actions.csv``: ``id,verb,noun,action``, one id per (verb_class, noun_class) pair seen in the
  training and validation annotations, sorted by (verb, noun).

This is the same layout ``hjepa synth`` writes for the synthetic dataset.

When ``EPIC_100_train.csv`` is not available, ``--rulstm-train`` converts RULSTM's
``training.csv`` (no header: narration_id, video_id, start, stop at 30 fps, verb, noun, action)
into the official columns: times = frame / 30, frames = frame * 60 / 30 for EPIC-55 videos and
frame * 50 / 30 for the extension (the official frame timelines; within one frame of the official
values on the 16,115 EPIC-55 segments that can be checked),
``narration_timestamp`` = start time, ``narration`` = "<verb> <noun>" from the class keys.
``--train-csv`` instead takes any file in the official format (e.g. ``EPIC_100_uda_source_train.csv``,
a subset).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

try:
    import hjepa  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hjepa.data.manifests import VideoRow, write_csv_manifest
from hjepa.data.synthetic import EPIC_COLUMNS, format_timestamp

RULSTM_FPS = 30.0


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in EPIC_COLUMNS if rows and c not in rows[0]]
    if missing:
        raise SystemExit(f"{path}: missing official columns {missing}")
    return rows


def read_classes(path: Path) -> list[str]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = {int(r["id"]): r["key"] for r in rows}
    return [keys[i] for i in range(len(keys))]


def epic_timestamp(seconds: float) -> str:
    """``HH:MM:SS.ff`` as the official start/stop columns."""
    return format_timestamp(seconds)[:-1]


def official_frame_rate(video_id: str) -> int:
    """Rate of the official frame columns: 60 for EPIC-55 recordings, 50 for the extension (PXX_1YY)."""
    return 50 if int(video_id.split("_")[1]) >= 100 else 60


def convert_rulstm(path: Path, fps: dict[str, float], verbs: list[str], nouns: list[str]) -> list[dict[str, str]]:
    """RULSTM ``training.csv`` rows -> official-format rows (see the module docstring)."""
    out = []
    with open(path, newline="") as f:
        for n, fields in enumerate(csv.reader(f), start=1):
            if len(fields) != 7:
                raise SystemExit(f"{path} row {n}: expected 7 fields, got {len(fields)}")
            nid, vid, start, stop, verb, noun, _action = fields
            if vid not in fps:
                raise SystemExit(f"{path} row {n}: video {vid} not in EPIC_100_video_info.csv")
            t0, t1 = int(start) / RULSTM_FPS, int(stop) / RULSTM_FPS
            v, o = int(verb), int(noun)
            out.append({
                "narration_id": nid,
                "participant_id": vid.split("_")[0],
                "video_id": vid,
                "narration_timestamp": format_timestamp(t0),
                "start_timestamp": epic_timestamp(t0),
                "stop_timestamp": epic_timestamp(t1),
                "start_frame": str(int(start) * official_frame_rate(vid) // int(RULSTM_FPS)),
                "stop_frame": str(int(stop) * official_frame_rate(vid) // int(RULSTM_FPS)),
                "narration": f"{verbs[v]} {nouns[o]}",
                "verb": verbs[v],
                "verb_class": str(v),
                "noun": nouns[o],
                "noun_class": str(o),
                "all_nouns": str([nouns[o]]),
                "all_noun_classes": str([o]),
            })
    return out


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(EPIC_COLUMNS), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def video_path(root: Path, video_id: str) -> Path | None:
    """Find ``video_id`` in the download layout (ROOT/P01/videos/P01_01.MP4) or flat (ROOT/P01_01.MP4)."""
    participant = video_id.split("_")[0]
    for folder in (root / participant / "videos", root / participant, root):
        for ext in (".MP4", ".mp4"):
            p = folder / f"{video_id}{ext}"
            if p.is_file():
                return p
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--annotations", type=Path, required=True, help="folder of the official EPIC_100_*.csv")
    p.add_argument("--videos", type=Path, required=True, help="video root (ROOT/P01/videos/P01_01.MP4)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--train-csv", type=Path, help="training annotations in the official format")
    p.add_argument("--rulstm-train", type=Path, help="RULSTM training.csv to convert when EPIC_100_train.csv is absent")
    p.add_argument("--keep-missing", action="store_true", help="keep manifest rows of absent videos")
    args = p.parse_args(argv)

    ann = args.annotations
    info_path = ann / "EPIC_100_video_info.csv"
    with open(info_path, newline="") as f:
        fps = {r["video_id"]: float(r["fps"]) for r in csv.DictReader(f)}
    verbs = read_classes(ann / "EPIC_100_verb_classes.csv")
    nouns = read_classes(ann / "EPIC_100_noun_classes.csv")

    official_train = ann / "EPIC_100_train.csv"
    if args.train_csv:
        train = read_rows(args.train_csv)
    elif official_train.is_file():
        train = read_rows(official_train)
    elif args.rulstm_train:
        train = convert_rulstm(args.rulstm_train, fps, verbs, nouns)
    else:
        raise SystemExit(f"{official_train} is missing: pass --train-csv or --rulstm-train")
    splits = {"train": train, "validation": read_rows(ann / "EPIC_100_validation.csv")}

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        write_rows(out / f"annotations_{name}.csv", rows)
        vids = sorted({r["video_id"] for r in rows})
        manifest, missing = [], 0
        for vid in vids:
            path = video_path(args.videos, vid)
            if path is None:
                missing += 1
                if not args.keep_missing:
                    continue
                path = args.videos / vid.split("_")[0] / "videos" / f"{vid}.MP4"
            manifest.append(VideoRow(str(path), -1))
        write_csv_manifest(out / f"manifest_{name}.csv", manifest)
        print(f"{name}: {len(rows)} segments, {len(vids)} videos, {missing} missing on disk, "
              f"{len(manifest)} in the manifest")
    shutil.copyfile(info_path, out / "video_info.csv")
    shutil.copyfile(ann / "EPIC_100_verb_classes.csv", out / "verb_classes.csv")
    shutil.copyfile(ann / "EPIC_100_noun_classes.csv", out / "noun_classes.csv")
    pairs = sorted({(int(r["verb_class"]), int(r["noun_class"])) for rows in splits.values() for r in rows})
    with open(out / "actions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "verb", "noun", "action"])
        for i, (v, o) in enumerate(pairs):
            w.writerow([i, v, o, f"{verbs[v]} {nouns[o]}"])
    print(f"{out}: {len(pairs)} actions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
