"""Manifests: which videos a dataset holds, with optional labels and frame ranges.

Three sources, one row type (:class:`VideoRow`):

* **CSV with a header**: columns ``path`` (required), ``label`` (optional, int, -1 = none),
  ``start_frame`` and ``end_frame`` (optional, together; ``end_frame`` exclusive). Any other
  column is refused.
* **V-JEPA lists**: one ``path label`` per line, separated by a space, no header (the label is the
  last field, so a path may contain spaces). Used for any file not named ``*.csv`` whose first
  line does not start with ``path``.
* **A folder**: video files found below it. When the folder has sub-folders, each first-level
  sub-folder is a class: sorted names get ids 0, 1, ... (files directly in the folder get -1).

Relative paths resolve against the manifest's folder (``~`` is expanded).

What is refused and what is skipped: a malformed manifest (unknown or missing column, wrong field
count, a label or frame number that is not an integer, ``start_frame >= end_frame``, an empty path)
raises :class:`ManifestError` at start with the file and the row number (1-based, the header is
row 1 in a CSV). A path that names no file, or a file that exists but cannot be decoded, is not a
manifest error: that video is skipped with one warning and counted (see ``VideoClipDataset``),
because large datasets always lose a few files and one of them should not stop a run.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from hjepa.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
CSV_COLUMNS = ("path", "label", "start_frame", "end_frame")


class ManifestError(UserError, ValueError):
    """A manifest that cannot be used; the message names the file and the row."""


@dataclass(frozen=True)
class VideoRow:
    """One video of a manifest.

    ``start_frame``/``end_frame`` restrict sampling to frames [start_frame, end_frame) of the
    file (``None``: the whole file). ``source``/``row`` say where the row came from.
    """

    path: str
    label: int = -1
    start_frame: int | None = None
    end_frame: int | None = None
    source: str = ""
    row: int = 0


def _resolve(path: str, base: Path) -> str:
    p = Path(os.path.expanduser(path))
    return os.path.normpath(p if p.is_absolute() else (base / p))


def _int_field(value: str, what: str, where: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ManifestError(f"{where}: {what} {value!r} is not an integer") from None


def read_csv_manifest(path: str | os.PathLike) -> list[VideoRow]:
    """Read a CSV manifest with a header (``path[,label][,start_frame,end_frame]``)."""
    path = Path(path)
    base = path.parent
    rows: list[VideoRow] = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ManifestError(f"{path}: empty manifest (no header row)") from None
        unknown = [h for h in header if h not in CSV_COLUMNS]
        if unknown:
            raise ManifestError(
                f"{path} row 1: unknown column(s) {unknown}; a CSV manifest starts with a header "
                f"row of the columns {list(CSV_COLUMNS)} (path required)"
            )
        if len(set(header)) != len(header):
            raise ManifestError(f"{path} row 1: repeated column in header {header}")
        if "path" not in header:
            raise ManifestError(f"{path} row 1: the header has no 'path' column ({header})")
        if ("start_frame" in header) != ("end_frame" in header):
            raise ManifestError(f"{path} row 1: 'start_frame' and 'end_frame' go together ({header})")
        col = {h: i for i, h in enumerate(header)}
        for line_no, fields in enumerate(reader, start=2):
            if not fields or all(not x.strip() for x in fields):
                continue  # blank line
            where = f"{path} row {line_no}"
            if len(fields) != len(header):
                raise ManifestError(f"{where}: {len(fields)} fields, the header has {len(header)}")
            rows.append(_make_row(fields, col, base, where, str(path), line_no))
    return rows


def _make_row(
    fields: Sequence[str], col: dict[str, int], base: Path, where: str, source: str, line_no: int
) -> VideoRow:
    raw = fields[col["path"]].strip()
    if not raw:
        raise ManifestError(f"{where}: empty path")
    label = _int_field(fields[col["label"]], "label", where) if "label" in col else -1
    if label < -1:
        raise ManifestError(f"{where}: label {label} is negative (use -1 for no label)")
    start = end = None
    if "start_frame" in col:
        start = _int_field(fields[col["start_frame"]], "start_frame", where)
        end = _int_field(fields[col["end_frame"]], "end_frame", where)
        if start < 0 or end <= start:
            raise ManifestError(f"{where}: need 0 <= start_frame < end_frame, got {start}, {end}")
    return VideoRow(_resolve(raw, base), label, start, end, source, line_no)


def read_space_manifest(path: str | os.PathLike) -> list[VideoRow]:
    """Read V-JEPA's space-separated ``path label`` list (no header)."""
    path = Path(path)
    rows: list[VideoRow] = []
    with open(path) as f:
        for line_no, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            where = f"{path} row {line_no}"
            parts = line.rsplit(" ", 1)
            if len(parts) != 2 or not parts[0].strip():
                raise ManifestError(f"{where}: expected 'path label', got {line!r}")
            label = _int_field(parts[1], "label", where)
            if label < -1:
                raise ManifestError(f"{where}: label {label} is negative (use -1 for no label)")
            rows.append(VideoRow(_resolve(parts[0].strip(), path.parent), label, None, None, str(path), line_no))
    return rows


def scan_folder(
    root: str | os.PathLike, extensions: Iterable[str] = VIDEO_EXTENSIONS
) -> tuple[list[VideoRow], list[str]]:
    """Find videos below ``root``. Returns (rows, class_names).

    With sub-folders, each first-level sub-folder is a class (sorted names -> ids 0..K-1) and its
    videos are found recursively; files directly in ``root`` get label -1. Rows are sorted by path.
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder")
    exts = tuple(e.lower() for e in extensions)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    rows: list[VideoRow] = []
    for f in sorted(root.iterdir()):
        if f.is_file() and f.suffix.lower() in exts:
            rows.append(VideoRow(str(f), -1, source=str(root)))
    for label, name in enumerate(classes):
        for f in sorted((root / name).rglob("*")):
            if f.is_file() and f.suffix.lower() in exts:
                rows.append(VideoRow(str(f), label, source=str(root)))
    return rows, classes


def read_manifest(path: str | os.PathLike) -> list[VideoRow]:
    """Read any manifest: a folder, a CSV with a ``path`` header, or a space-separated list."""
    path = Path(os.path.expanduser(str(path)))
    if path.is_dir():
        return scan_folder(path)[0]
    if not path.is_file():
        raise ManifestError(f"{path}: manifest does not exist")
    with open(path, newline="") as f:
        first = f.readline()
    head = first.split(",")[0].strip().strip('"')
    if head == "path" or path.suffix.lower() == ".csv":
        return read_csv_manifest(path)
    return read_space_manifest(path)


def mix_manifests(
    paths: str | os.PathLike | Sequence[str | os.PathLike], weights: Sequence[float] | None = None
) -> tuple[list[VideoRow], list[float]]:
    """Read several manifests into one row list with a sampling weight per row.

    Manifest ``m`` with ``n_m`` rows and weight ``w_m`` gives each of its rows weight
    ``w_m / n_m``, so that a weighted sampler draws from manifest ``m`` with probability
    ``w_m / sum(w)`` whatever its size. Without weights every row weighs 1 (plain concatenation).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise ManifestError("no manifest given")
    if weights is not None:
        if len(weights) != len(paths):
            raise ManifestError(f"{len(weights)} weights for {len(paths)} manifests")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ManifestError(f"manifest weights must be >= 0 with a positive sum, got {list(weights)}")
    rows: list[VideoRow] = []
    row_w: list[float] = []
    for i, p in enumerate(paths):
        part = read_manifest(p)
        if not part:
            raise ManifestError(f"{p}: manifest holds no video")
        rows.extend(part)
        w = 1.0 if weights is None else float(weights[i]) / len(part)
        row_w.extend([w] * len(part))
    return rows, row_w


def write_csv_manifest(path: str | os.PathLike, rows: Iterable[VideoRow], relative: bool = True) -> None:
    """Write rows as a CSV manifest; paths are written relative to its folder when ``relative``."""
    path = Path(path)
    rows = list(rows)
    ranged = any(r.start_frame is not None for r in rows)
    if ranged and any(r.start_frame is None or r.end_frame is None for r in rows):
        raise ManifestError(f"{path}: either every row has start_frame/end_frame or none does")
    header = ["path", "label"] + (["start_frame", "end_frame"] if ranged else [])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            p = r.path
            if relative:
                try:
                    p = os.path.relpath(os.path.abspath(r.path), path.parent.resolve())
                except ValueError:  # another drive (Windows)
                    p = r.path
            line = [p, r.label]
            if ranged:
                line += [r.start_frame, r.end_frame]
            w.writerow(line)
