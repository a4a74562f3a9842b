"""Manifests: CSV with header, V-JEPA space-separated lists, folder scan, relative paths, mixing, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hjepa.data.manifests import (
    ManifestError,
    VideoRow,
    mix_manifests,
    read_manifest,
    scan_folder,
    write_csv_manifest,
)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_csv_with_labels_and_ranges_resolves_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    m = tmp_path / "lists" / "train.csv"
    m.write_text("path,label,start_frame,end_frame\n../videos/a.mp4,3,0,100\n/abs/b.mp4,-1,10,20\n\n")
    rows = read_manifest(m)
    assert rows == [
        VideoRow(str(tmp_path / "videos" / "a.mp4"), 3, 0, 100, str(m), 2),
        VideoRow("/abs/b.mp4", -1, 10, 20, str(m), 3),
    ]


def test_csv_path_only(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text("path\nx.mp4\n")
    assert read_manifest(m) == [VideoRow(str(tmp_path / "x.mp4"), -1, None, None, str(m), 2)]


@pytest.mark.parametrize(
    "text, row, what",
    [
        ("path,lable\na.mp4,1\n", 1, "unknown column"),
        ("file,label\na.mp4,1\n", 1, "unknown column"),
        ("path,label,start_frame\na.mp4,1,0\n", 1, "go together"),
        ("path,label\na.mp4,1\nb.mp4,cat\n", 3, "not an integer"),
        ("path,label\na.mp4,1\nb.mp4\n", 3, "1 fields, the header has 2"),
        ("path,label,start_frame,end_frame\na.mp4,1,50,10\n", 2, "start_frame < end_frame"),
        ("path,label\n,1\n", 2, "empty path"),
        ("a.mp4,1\n", 1, "unknown column.*header row"),
    ],
)
def test_malformed_csv_is_refused_with_the_row(tmp_path: Path, text: str, row: int, what: str) -> None:
    m = tmp_path / "m.csv"
    m.write_text(text)
    with pytest.raises(ManifestError, match=f"row {row}: .*{what}"):
        read_manifest(m)


def test_space_separated_list(tmp_path: Path) -> None:
    m = tmp_path / "k400_train.txt"
    m.write_text("/data/k400/a b.mp4 7\nclips/c.mp4 0\n\n")
    assert [(r.path, r.label, r.row) for r in read_manifest(m)] == [
        ("/data/k400/a b.mp4", 7, 1),
        (str(tmp_path / "clips" / "c.mp4"), 0, 2),
    ]
    m.write_text("a.mp4 1\nb.mp4 x\n")
    with pytest.raises(ManifestError, match="row 2: label 'x' is not an integer"):
        read_manifest(m)
    m.write_text("a.mp4\n")
    with pytest.raises(ManifestError, match="row 1: expected 'path label'"):
        read_manifest(m)


def test_folder_scan_with_class_folders(tmp_path: Path) -> None:
    for p in ["walk/x.mp4", "cook/day2/y.avi", "cook/z.MOV", "loose.mp4", "cook/notes.txt", "empty/.keep"]:
        _touch(tmp_path / p)
    rows, classes = scan_folder(tmp_path)
    assert classes == ["cook", "empty", "walk"]
    got = {Path(r.path).relative_to(tmp_path).as_posix(): r.label for r in rows}
    assert got == {"loose.mp4": -1, "cook/day2/y.avi": 0, "cook/z.MOV": 0, "walk/x.mp4": 2}
    assert read_manifest(tmp_path) == rows


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    rows = [VideoRow(str(tmp_path / "v" / "a.mp4"), 2, 5, 9), VideoRow(str(tmp_path / "b.mp4"), -1, 0, 3)]
    write_csv_manifest(tmp_path / "lists" / "m.csv", rows)
    text = (tmp_path / "lists" / "m.csv").read_text().splitlines()
    assert text[0] == "path,label,start_frame,end_frame" and text[1].startswith("../v/a.mp4,")
    back = read_manifest(tmp_path / "lists" / "m.csv")
    assert [(r.path, r.label, r.start_frame, r.end_frame) for r in back] == [
        (r.path, r.label, r.start_frame, r.end_frame) for r in rows
    ]


def test_mixing_weights_per_row(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.txt"
    a.write_text("path\n" + "".join(f"a{i}.mp4\n" for i in range(4)))
    b.write_text("b0.mp4 1\n")
    rows, w = mix_manifests([a, b], [3.0, 1.0])
    assert len(rows) == 5 and w == [0.75] * 4 + [1.0]  # manifest a drawn 3x as often as b
    rows, w = mix_manifests([a, b])
    assert w == [1.0] * 5
    with pytest.raises(ManifestError, match="1 weights for 2 manifests"):
        mix_manifests([a, b], [1.0])


def test_missing_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "nope.csv")
