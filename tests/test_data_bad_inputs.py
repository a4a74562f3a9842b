"""Bad inputs: each is skipped with one warning naming the file and counted; all bad -> clear error.

Size rule under test: frames whose shorter side is below 16 px are refused (1x1); any aspect ratio
is accepted and resized (4000x16 gives 64x64 clips). A one-frame file and an image renamed to
.mp4 are refused (a video needs >= 2 frames).
"""

from __future__ import annotations

import logging
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from hjepa.data import dataset as dataset_mod
from hjepa.data.dataset import ClipCollator, FailedSample, VideoClipDataset, check_rows
from hjepa.data.manifests import VideoRow, write_csv_manifest
from hjepa.data.readers import VideoReadError, decord_available, open_video
from hjepa.data.sampling import ClipSampler
from hjepa.data.transforms import EvalClipTransform
from hjepa.train.datamodule import VideoDataModule

DATA = Path(__file__).parents[1].parent / "shared" / "data"
REAL_MP4 = DATA / "videos" / "part_0.mp4"  # 32 frames, 340x256, moov atom at the end
CORRUPT = DATA / "corrupt" / "decord_corrupted.mp4"
needs_data = pytest.mark.skipif(not (REAL_MP4.is_file() and CORRUPT.is_file()), reason=f"shared data not at {DATA}")
READERS = [pytest.param("decord", marks=pytest.mark.skipif(not decord_available(), reason="no decord")), "pyav"]


def _encode(path: Path, w: int, h: int, n: int, codec: str = "libx264", pix_fmt: str = "yuv420p") -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=8)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for i in range(n):
            frame = np.full((h, w, 3), (i * 37) % 256, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _png(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes([200, 30, 30] * w) for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(8):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts, f.time_base = 16000, i * 1024, Fraction(1, 16000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _faststart_truncated(path: Path, src: Path) -> Path:
    """Remux with the index first, then cut in half: opens, but half the frames are gone."""
    full = path.with_name("faststart_full.mp4")
    with av.open(str(src)) as i, av.open(str(full), "w", options={"movflags": "faststart"}) as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.dts is not None:
                p.stream = s
                o.mux(p)
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    full.unlink()
    return path


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not (REAL_MP4.is_file() and CORRUPT.is_file()):
        pytest.skip(f"shared data not at {DATA}")
    d = tmp_path_factory.mktemp("bad")
    real = REAL_MP4.read_bytes()
    files = {"missing": d / "missing.mp4"}
    (files.setdefault("empty", d / "empty.mp4")).write_bytes(b"")
    (files.setdefault("truncated", d / "truncated.mp4")).write_bytes(real[: len(real) // 2])
    files["truncated_faststart"] = _faststart_truncated(d / "truncated_faststart.mp4", REAL_MP4)
    (files.setdefault("random_bytes", d / "random_bytes.mp4")).write_bytes(np.random.default_rng(0).bytes(30000))
    (files.setdefault("png_renamed", d / "png_renamed.mp4")).write_bytes(_png(64, 48))
    files["audio_only"] = _audio_only(d / "audio_only.mp4")
    files["one_frame"] = _encode(d / "one_frame.mp4", 64, 64, 1)
    files["tiny_1x1"] = _encode(d / "tiny_1x1.mp4", 1, 1, 10, pix_fmt="yuv444p")  # x264 4:2:0 needs even sizes
    files["corrupt"] = CORRUPT
    return files


@pytest.fixture(scope="module")
def wide_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _encode(tmp_path_factory.mktemp("wide") / "wide_4000x16.mp4", 4000, 16, 12)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_mod, "_warned", set())


def _warnings_about(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and str(path) in r.getMessage()]


SAMPLER = ClipSampler(8, 4)  # 32 frames: a clip of the 50-frame corrupt file always crosses its bad packet


@pytest.mark.parametrize("reader", READERS)
def test_each_bad_input_is_skipped_once_with_a_warning(
    bad_files: dict[str, Path], reader: str, caplog: pytest.LogCaptureFixture
) -> None:
    ds = VideoClipDataset(
        [VideoRow(str(p)) for p in bad_files.values()], SAMPLER, EvalClipTransform(64), train=True, reader=reader
    )
    collate = ClipCollator(SAMPLER.num_frames, 64)
    with caplog.at_level(logging.WARNING):
        samples = [ds[i] for i in range(len(ds))] + [ds[i] for i in range(len(ds))]  # two epochs
    assert all(isinstance(s, FailedSample) for s in samples), [s for s in samples if not isinstance(s, FailedSample)]
    batch = collate(samples[: len(ds)])
    assert int(batch["skipped"]) == len(bad_files) and batch["clip"].shape == (0, 32, 64, 64, 3)
    assert sorted(batch["skipped_files"]) == sorted(str(p) for p in bad_files.values())
    for name, path in bad_files.items():
        assert len(_warnings_about(caplog, path)) == 1, name


# Damage after the first frames passes the header probe (it decodes frame 0 only) and is skipped when
# loaded: the corrupt file for both readers, and for decord the truncated file whose index comes
# first (decord lists the packets present; PyAV compares them with the header's frame count).
LATE_DAMAGE = {"decord": {"corrupt", "truncated_faststart"}, "pyav": {"corrupt"}}


@pytest.mark.parametrize("reader", READERS)
def test_probe_refuses_bad_inputs_at_setup(bad_files: dict[str, Path], reader: str) -> None:
    late = LATE_DAMAGE[reader]
    ok, bad = check_rows([VideoRow(str(p)) for p in bad_files.values()], reader)
    name_of = {str(p): n for n, p in bad_files.items()}
    assert sorted(name_of[r.path] for r in ok) == sorted(late)
    assert len(bad) == len(bad_files) - len(late)


@pytest.mark.parametrize("reader", READERS)
def test_readers_raise_a_read_error_naming_the_file(bad_files: dict[str, Path], reader: str) -> None:
    decodable = {"decord": {"one_frame"}, "pyav": {"one_frame", "png_renamed", "tiny_1x1"}}[reader]
    for name, path in bad_files.items():
        if name in decodable:
            continue  # refused by the dataset's rules (>= 2 frames, >= 16 px) instead
        with pytest.raises(VideoReadError) as err:
            r = open_video(path, reader)
            r.get_batch(list(range(r.num_frames)))
        assert str(path) in str(err.value), name


def test_wide_video_is_resized(wide_file: Path) -> None:
    ds = VideoClipDataset([VideoRow(str(wide_file))], SAMPLER, EvalClipTransform(64), train=False, reader="pyav")
    s = ds[0]
    assert not isinstance(s, FailedSample) and s["clip"].shape == (32, 64, 64, 3)


def test_all_bad_fails_at_setup_with_the_count(bad_files: dict[str, Path], tmp_path: Path) -> None:
    rows = [VideoRow(str(p)) for n, p in bad_files.items() if n not in LATE_DAMAGE["pyav"]]
    write_csv_manifest(tmp_path / "m.csv", rows, relative=False)
    dm = VideoDataModule(train_manifests=str(tmp_path / "m.csv"), reader="pyav")
    with pytest.raises(RuntimeError, match=f"all {len(rows)} training videos"):
        dm.setup("fit")


def test_skip_report_counts_setup_and_load_failures(
    bad_files: dict[str, Path], wide_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [VideoRow(str(p)) for p in bad_files.values()] + [VideoRow(str(wide_file))]
    write_csv_manifest(tmp_path / "m.csv", rows, relative=False)
    dm = VideoDataModule(train_manifests=str(tmp_path / "m.csv"), reader="pyav", batch_size=2, drop_last=False)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
        assert dm.skip_report()["skipped_videos"] == len(bad_files) - len(LATE_DAMAGE["pyav"])
        clips = 0
        for batch in dm.train_dataloader():
            dm.record_batch(batch)
            clips += batch["clip"].shape[0]
    assert clips == 1
    report = dm.skip_report()
    assert report["skipped_videos"] == len(bad_files)
    assert report["skipped_files"] == sorted(str(p) for p in bad_files.values())
    assert report["skipped_samples"] == len(LATE_DAMAGE["pyav"])
    for name, path in bad_files.items():
        assert len(_warnings_about(caplog, path)) == 1, name
