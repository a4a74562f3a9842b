"""Write a manifest CSV for a Something-Something v2 split.

    python datasets/ssv2/make_manifest.py --videos SSV2/20bn-something-something-v2 \
        --labels SSV2/labels --split train --out SSV2/manifest_train.csv

Labels: ``labels.json`` maps the 174 templates ("Putting [something] on a surface" without the
brackets) to ids; ``<split>.json`` lists ``{"id", "label", "template", "placeholders"}`` per video
(``test.json`` has ids only -> label -1). Videos are ``<videos>/<id>.webm``; absent ones are left out
and counted unless ``--keep-missing``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import hjepa  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hjepa.data.manifests import VideoRow, write_csv_manifest


def template_key(template: str) -> str:
    return template.replace("[", "").replace("]", "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=Path, required=True, help="folder of <id>.webm files")
    p.add_argument("--labels", type=Path, required=True, help="folder of labels.json, train.json, ...")
    p.add_argument("--split", default="train", choices=["train", "validation", "test"])
    p.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    p.add_argument("--keep-missing", action="store_true", help="keep rows whose video is absent")
    args = p.parse_args(argv)

    classes = json.loads((args.labels / "labels.json").read_text())
    class_id = {template_key(k): int(v) for k, v in classes.items()}
    entries = json.loads((args.labels / f"{args.split}.json").read_text())
    rows, missing = [], 0
    for n, e in enumerate(entries):
        label = -1
        if "template" in e:
            key = template_key(e["template"])
            if key not in class_id:
                raise SystemExit(f"{args.split}.json entry {n} (id {e['id']}): template {key!r} not in labels.json")
            label = class_id[key]
        path = args.videos / f"{e['id']}.webm"
        if not path.is_file():
            missing += 1
            if not args.keep_missing:
                continue
        rows.append(VideoRow(str(path), label))
    write_csv_manifest(args.out, rows)
    print(f"{args.out}: {len(rows)} videos, {len(class_id)} classes, {missing} of {len(entries)} missing on disk")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
