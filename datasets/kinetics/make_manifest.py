"""Write a manifest CSV for a Kinetics-400/600/700 split.

    python datasets/kinetics/make_manifest.py --root K400 --split train --out K400/manifest_train.csv

Labels are the ids of the sorted class names of ``--classes-from`` (default: the training
annotation file), the usual Kinetics convention; they are written to ``classes.txt`` beside the
manifest. Rows whose video is not on disk (YouTube take-downs; a few percent is normal) are left
out and counted unless ``--keep-missing``.

With ``ROOT/annotations/<split>.csv`` (columns ``label,youtube_id,time_start,time_end,split``),
each row is matched to ``ROOT/<split>/<youtube_id>_<time_start:06d>_<time_end:06d>.<ext>`` or, for
older downloads, any file below ``ROOT/<split>`` whose name starts with the youtube id. Without an
annotation file, ``ROOT/<split>/<class name>/*.mp4`` class folders are scanned.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

try:
    import hjepa  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hjepa.data.manifests import VIDEO_EXTENSIONS, VideoRow, scan_folder, write_csv_manifest


def read_annotations(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"youtube_id", "time_start", "time_end"}
    if rows and not need <= set(rows[0]):
        raise SystemExit(f"{path}: expected columns {sorted(need)} (+ label), got {list(rows[0])}")
    return rows


def index_videos(folder: Path) -> dict[str, Path]:
    """file stem -> path, for every video below ``folder``."""
    return {
        f.stem: f for f in sorted(folder.rglob("*")) if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True, help="Kinetics root (holds <split>/ and annotations/)")
    p.add_argument("--split", default="train", help="train, val, validate or test")
    p.add_argument("--annotations", type=Path, help="annotation CSV (default ROOT/annotations/<split>.csv)")
    p.add_argument("--classes-from", type=Path, help="annotation CSV whose sorted labels define the ids")
    p.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    p.add_argument("--keep-missing", action="store_true", help="keep rows whose video is absent")
    args = p.parse_args(argv)

    video_dir = args.root / args.split
    ann = args.annotations or args.root / "annotations" / f"{args.split}.csv"
    if not ann.is_file():
        if not video_dir.is_dir():
            raise SystemExit(f"neither {ann} nor {video_dir} exists")
        rows, classes = scan_folder(video_dir)
        write_csv_manifest(args.out, rows)
        (args.out.parent / "classes.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(classes)))
        print(f"{args.out}: {len(rows)} videos from class folders, {len(classes)} classes")
        return 0

    notes = read_annotations(ann)
    class_file = args.classes_from or args.root / "annotations" / "train.csv"
    source = read_annotations(class_file) if class_file.is_file() else notes
    classes = sorted({r["label"] for r in source if r.get("label")})
    class_id = {c: i for i, c in enumerate(classes)}
    videos = index_videos(video_dir) if video_dir.is_dir() else {}
    by_id: dict[str, Path] = {}
    for stem, path in videos.items():
        by_id.setdefault(stem[:11], path)  # youtube ids are 11 characters
    out_rows, missing = [], 0
    for r in notes:
        stem = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}"
        path = videos.get(stem) or by_id.get(r["youtube_id"])
        label = class_id.get(r.get("label", ""), -1)
        if label == -1 and r.get("label"):
            raise SystemExit(f"{ann}: label {r['label']!r} is not among the {len(classes)} classes of {class_file}")
        if path is None:
            missing += 1
            if not args.keep_missing:
                continue
            path = video_dir / f"{stem}.mp4"
        out_rows.append(VideoRow(str(path), label))
    write_csv_manifest(args.out, out_rows)
    (args.out.parent / "classes.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(classes)))
    print(f"{args.out}: {len(out_rows)} videos, {len(classes)} classes, {missing} of {len(notes)} missing on disk")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
