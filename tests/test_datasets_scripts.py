"""datasets/*/make_manifest.py on small fake trees in the real layouts, and EPIC on the real annotations."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from hjepa.data.manifests import read_manifest
from hjepa.data.synthetic import EPIC_COLUMNS, encode_video

ROOT = Path(__file__).parents[1]
EPIC = ROOT.parent / "shared" / "data" / "epic100"


def _script(name: str) -> ModuleType:
    path = ROOT / "datasets" / name / "make_manifest.py"
    spec = importlib.util.spec_from_file_location(f"make_manifest_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00")
    return path


def test_folder(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    for cls in ("wave", "jump"):
        encode_video(_touch(root / cls / f"{cls}_1.mp4"), np.zeros((3, 32, 32, 3), np.uint8), fps=8)
    _touch(root / "jump" / "broken.mp4").write_bytes(b"not a video")
    assert _script("folder").main([str(root), "--out", str(tmp_path / "m.csv")]) == 0
    rows = read_manifest(tmp_path / "m.csv")
    assert [(Path(r.path).name, r.label) for r in rows] == [("broken.mp4", 0), ("jump_1.mp4", 0), ("wave_1.mp4", 1)]
    assert (tmp_path / "classes.txt").read_text() == "0 jump\n1 wave\n"
    assert _script("folder").main([str(root), "--out", str(tmp_path / "c.csv"), "--check", "--reader", "pyav"]) == 0
    assert [Path(r.path).name for r in read_manifest(tmp_path / "c.csv")] == ["jump_1.mp4", "wave_1.mp4"]


def test_kinetics(tmp_path: Path) -> None:
    root = tmp_path / "K400"
    ann = root / "annotations"
    ann.mkdir(parents=True)
    header = "label,youtube_id,time_start,time_end,split\n"
    (ann / "train.csv").write_text(
        header + "zumba,aaaaaaaaaaa,10,20,train\nabseiling,bbbbbbbbbbb,0,10,train\n"
        "abseiling,ccccccccccc,5,15,train\n"
    )
    (ann / "val.csv").write_text(header + "zumba,ddddddddddd,30,40,val\n")
    _touch(root / "train" / "aaaaaaaaaaa_000010_000020.mp4")
    _touch(root / "train" / "bbbbbbbbbbb_000000_000010.mp4")  # ccc... is a YouTube take-down
    _touch(root / "val" / "zumba" / "ddddddddddd.mp4")  # an older per-class layout
    k = _script("kinetics")
    assert k.main(["--root", str(root), "--split", "train", "--out", str(root / "train.csv")]) == 0
    rows = read_manifest(root / "train.csv")
    assert [(Path(r.path).name, r.label) for r in rows] == [
        ("aaaaaaaaaaa_000010_000020.mp4", 1), ("bbbbbbbbbbb_000000_000010.mp4", 0)
    ]
    assert (root / "classes.txt").read_text() == "0 abseiling\n1 zumba\n"
    assert k.main(["--root", str(root), "--split", "val", "--out", str(root / "val.csv")]) == 0
    assert [(Path(r.path).name, r.label) for r in read_manifest(root / "val.csv")] == [("ddddddddddd.mp4", 1)]


def test_ssv2(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "labels.json").write_text(json.dumps({"Holding something": "0", "Putting something on a surface": "1"}))
    entries = [
        {"id": "11", "label": "putting a cup on a table", "template": "Putting [something] on a surface", "placeholders": ["cup"]},
        {"id": "12", "label": "holding a pen", "template": "Holding [something]", "placeholders": ["pen"]},
        {"id": "13", "label": "holding a cup", "template": "Holding [something]", "placeholders": ["cup"]},
    ]
    (labels / "train.json").write_text(json.dumps(entries))
    (labels / "test.json").write_text(json.dumps([{"id": "11"}]))
    videos = tmp_path / "20bn-something-something-v2"
    for i in ("11", "12"):
        _touch(videos / f"{i}.webm")
    s = _script("ssv2")
    args = ["--videos", str(videos), "--labels", str(labels)]
    assert s.main(args + ["--split", "train", "--out", str(tmp_path / "train.csv")]) == 0
    assert [(Path(r.path).name, r.label) for r in read_manifest(tmp_path / "train.csv")] == [("11.webm", 1), ("12.webm", 0)]
    assert s.main(args + ["--split", "test", "--out", str(tmp_path / "test.csv")]) == 0
    assert [r.label for r in read_manifest(tmp_path / "test.csv")] == [-1]


needs_epic = pytest.mark.skipif(not EPIC.is_dir(), reason=f"EPIC-KITCHENS-100 annotations not found at {EPIC}")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@needs_epic
def test_epic_on_the_real_annotations(tmp_path: Path) -> None:
    videos = tmp_path / "EPIC-KITCHENS"
    _touch(videos / "P01" / "videos" / "P01_11.MP4")  # two validation videos on disk, in the download layout
    _touch(videos / "P01" / "videos" / "P01_12.MP4")
    out = tmp_path / "out"
    e = _script("epic_kitchens_100")
    argv = ["--annotations", str(EPIC), "--videos", str(videos), "--out", str(out),
            "--rulstm-train", str(EPIC / "rulstm_ek100" / "training.csv")]
    assert e.main(argv) == 0
    train, val = _rows(out / "annotations_train.csv"), _rows(out / "annotations_validation.csv")
    assert len(train) == 67217 and len(val) == 9668
    assert tuple(train[0]) == tuple(val[0]) == EPIC_COLUMNS
    assert len({r["video_id"] for r in train}) == 495 and len({r["video_id"] for r in val}) == 138
    assert [Path(r.path).name for r in read_manifest(out / "manifest_validation.csv")] == ["P01_11.MP4", "P01_12.MP4"]
    assert read_manifest(out / "manifest_train.csv") == []
    assert len(_rows(out / "actions.csv")) == 3806  # as RULSTM's actions.csv
    assert len(_rows(out / "video_info.csv")) == 700
    # The converted training rows agree with the official rows of the same segments (EPIC-55 part).
    official = {r["narration_id"]: r for r in _rows(EPIC / "EPIC_100_uda_source_train.csv")}
    ours = [r for r in train if r["narration_id"] in official]
    assert len(ours) == len(official) == 16115
    for r in ours:
        o = official[r["narration_id"]]
        assert (r["verb_class"], r["noun_class"]) == (o["verb_class"], o["noun_class"])
        assert abs(int(r["start_frame"]) - int(o["start_frame"])) <= 1
        assert abs(int(r["stop_frame"]) - int(o["stop_frame"])) <= 1


@needs_epic
def test_epic_with_an_official_format_train_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["--annotations", str(EPIC), "--videos", str(tmp_path), "--out", str(out), "--keep-missing",
            "--train-csv", str(EPIC / "EPIC_100_uda_source_train.csv")]
    assert _script("epic_kitchens_100").main(argv) == 0
    assert len(_rows(out / "annotations_train.csv")) == 16115
    manifest = read_manifest(out / "manifest_train.csv")
    assert len(manifest) == 148 and manifest[0].path.endswith("P01/videos/P01_01.MP4")
