"""Write a manifest CSV for any folder of videos.

    python datasets/folder/make_manifest.py ROOT --out manifest.csv [--check]

Videos are found below ROOT. If ROOT has sub-folders, each first-level sub-folder is a class
(sorted names -> label ids 0..K-1, written to ``classes.txt`` beside the manifest); videos
directly in ROOT get label -1. Paths are written relative to the manifest's folder. ``--check``
opens every video and leaves out (and lists) the ones that cannot be decoded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import hjepa  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hjepa.data.dataset import check_rows
from hjepa.data.manifests import VIDEO_EXTENSIONS, scan_folder, write_csv_manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path, help="folder of videos (class sub-folders optional)")
    p.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    p.add_argument("--extensions", nargs="+", default=list(VIDEO_EXTENSIONS), help="video file endings")
    p.add_argument("--check", action="store_true", help="decode-check every video, drop bad ones")
    p.add_argument("--reader", default="decord", choices=["decord", "pyav"], help="reader for --check")
    p.add_argument("--absolute", action="store_true", help="write absolute paths")
    args = p.parse_args(argv)

    rows, classes = scan_folder(args.root, args.extensions)
    if not rows:
        print(f"no video with endings {args.extensions} below {args.root}", file=sys.stderr)
        return 1
    bad: list[tuple[str, str]] = []
    if args.check:
        rows, bad = check_rows(rows, args.reader)
    write_csv_manifest(args.out, rows, relative=not args.absolute)
    if classes:
        (args.out.parent / "classes.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(classes)))
    print(f"{args.out}: {len(rows)} videos, {len(classes)} classes, {len(bad)} unreadable left out")
    for path, why in bad:
        print(f"  left out {path}: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
