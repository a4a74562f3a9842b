"""Readers on the shared real clips: frame counts, metadata, decord/PyAV agreement, rotation, streams.

Tolerance between decord and PyAV: mean |difference| <= 1 grey level and at most 2 % of values
off by more than 2 (the two use different FFmpeg builds; on these clips they are bit-identical
except a few values in a million of the UCF101 MPEG-4 files).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hjepa.data import readers
from hjepa.data.readers import DecordReader, PyAVReader, decord_available, open_video, resolve_reader
from hjepa.data.sampling import ClipSampler

DATA = Path(__file__).parents[1].parent / "shared" / "data"
VIDEOS = DATA / "videos"
MANIFEST = VIDEOS / "manifest.json"
HAVE_CLIPS = MANIFEST.is_file()
needs_clips = pytest.mark.skipif(not HAVE_CLIPS, reason=f"shared clips not found at {VIDEOS}")
needs_decord = pytest.mark.skipif(not decord_available(), reason="decord not installed (x86-64 Linux wheels only)")

# nasa_13013.mp4 holds two video streams; both readers take FFmpeg's best one, stream 3.
BEST_STREAM = {"nasa_13013.mp4": 3}
ROTATED = {"video_90.mov", "video_270.mov"}  # display matrix turns 568x320 into 320 wide, 568 high


def _clips() -> list[dict]:
    if not HAVE_CLIPS:
        return []
    out = []
    for entry in json.loads(MANIFEST.read_text()):
        videos = [s for s in entry["streams"] if s["type"] == "video"]
        want = BEST_STREAM.get(entry["file"], videos[0]["index"])
        stream = next(s for s in videos if s["index"] == want)
        out.append({"file": entry["file"], **stream})
    return out


CLIPS = _clips()
IDS = [c["file"] for c in CLIPS]
READER_CLASSES = [pytest.param(DecordReader, marks=needs_decord, id="decord"), pytest.param(PyAVReader, id="pyav")]


def _expected_frames(c: dict) -> int:
    # The header count where the container has one (Matroska has none: then the decoded count).
    return c["header_frames"] or c["decoded_frames"]


@needs_clips
def test_every_clip_is_listed() -> None:
    assert len(CLIPS) == 24, "the shared clip set changed; update these tests"


@needs_clips
@pytest.mark.parametrize("reader_cls", READER_CLASSES)
@pytest.mark.parametrize("clip", CLIPS, ids=IDS)
def test_metadata_matches_readme(reader_cls: type, clip: dict) -> None:
    r = reader_cls(VIDEOS / clip["file"])
    assert r.num_frames == _expected_frames(clip)
    assert r.fps == pytest.approx(clip["avg_fps"], rel=1e-3)
    # duration = num_frames / fps: the stream duration of the README (Matroska declares none; its
    # container duration includes the audio, 10.381 s against 310 frames / 30 fps = 10.333 s).
    assert r.duration == pytest.approx(clip["stream_duration_s"] or 10.333, abs=1.5 / r.fps)
    h, w = r.frame_size()
    if clip["file"] in ROTATED:
        assert (h, w) == (clip["width"], clip["height"])
    else:
        assert (h, w) == (clip["height"], clip["width"])


@needs_clips
@pytest.mark.parametrize("reader_cls", READER_CLASSES)
def test_hmdb_avi_declares_one_frame_more_than_decodes(reader_cls: type) -> None:
    """HMDB51 packed-bitstream AVI: 73 declared, 72 decoded; the last index repeats frame 71."""
    r = reader_cls(VIDEOS / "RATRACE_wave_f_nm_np1_fr_goo_37.avi")
    assert r.num_frames == 73
    x = r.get_batch([70, 71, 72])
    assert torch.equal(x[1], x[2]) and not torch.equal(x[0], x[1])


@needs_clips
@needs_decord
@pytest.mark.parametrize("clip", CLIPS, ids=IDS)
def test_decord_and_pyav_agree(clip: dict) -> None:
    path = VIDEOS / clip["file"]
    d, p = DecordReader(path), PyAVReader(path)
    n = d.num_frames
    assert p.num_frames == n
    g = torch.Generator().manual_seed(0)
    # A training clip of the default config (32 consecutive frames) plus scattered, unsorted frames;
    # for HD clips 8 frames from the first quarter, to keep the test short.
    if clip["width"] * clip["height"] > 500_000:
        idx = ClipSampler(8, 1).train_clip(n // 4, d.fps, g).tolist() + [n // 4, 0]
    else:
        idx = ClipSampler(8, 4).train_clip(n, d.fps, g).tolist() + [n - 1, 0, n // 2]
    a, b = d.get_batch(idx), p.get_batch(idx)
    assert a.shape == b.shape == (len(idx), *d.frame_size(), 3)
    diff = (a.to(torch.int16) - b.to(torch.int16)).abs_()
    mean = diff.sum(dtype=torch.float64) / diff.numel()
    assert mean <= 1.0, f"mean |decord - pyav| = {mean:.3f}"
    assert (diff > 2).sum() <= 0.02 * diff.numel()


@needs_clips
@pytest.mark.parametrize(
    "name", ["v_SoccerJuggling_g24_c01.avi", "bikes.mp4", "flipping_a_pancake.mkv", "TrumanShow_wave_f_nm_np1_fr_med_26.avi"]
)
def test_pyav_seeking_matches_counting(name: str) -> None:
    """Seek-and-time-stamp decoding gives exactly the frames of decoding from the start."""
    seek = PyAVReader(VIDEOS / name)
    count = PyAVReader(VIDEOS / name)
    count._pts_ok = False  # force count-based decoding
    n = seek.num_frames
    idx = [n - 1, 3, n // 2, n // 2 + 1, 3, n - 2]
    assert torch.equal(seek.get_batch(idx), count.get_batch(idx))


@needs_clips
def test_pyav_seeks_instead_of_decoding_everything() -> None:
    # 21 key frames in 251 frames: the last frame is reached from the last key frame.
    r = PyAVReader(VIDEOS / "v_SoccerJuggling_g24_c01.avi")
    r.get_batch([r.num_frames - 1])
    assert r.seeks == 1 and r.frames_decoded <= 20, (r.seeks, r.frames_decoded)


@needs_clips
def test_pyav_reads_consecutive_chunks_without_redecoding() -> None:
    r = PyAVReader(VIDEOS / "test.mp4")  # 300 frames, 2 key frames
    chunks = [r.get_batch(list(range(i, min(300, i + 64)))) for i in range(0, 300, 64)]
    assert r.frames_decoded == 300 and r.seeks == 1
    count = PyAVReader(VIDEOS / "test.mp4")
    count._pts_ok = False
    assert torch.equal(torch.cat(chunks), count.get_batch(list(range(300))))


@needs_clips
@pytest.mark.parametrize("reader", [pytest.param("decord", marks=needs_decord), "pyav"])
def test_rotation_is_honoured(reader: str) -> None:
    import av

    frames = {}
    for angle in (0, 90, 180, 270):
        frames[angle] = open_video(VIDEOS / f"video_{angle}.mov", reader).get_batch([1])[0].numpy()
    assert frames[0].shape == frames[180].shape == (320, 568, 3)
    assert frames[90].shape == frames[270].shape == (568, 320, 3)
    # The stored pixels of video_180 turned by 180 degrees are what the reader returns.
    with av.open(str(VIDEOS / "video_180.mov")) as c:
        raw = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][1]
    assert np.abs(frames[180].astype(int) - raw[::-1, ::-1].astype(int)).mean() < 1.0


@needs_clips
@pytest.mark.parametrize("reader", [pytest.param("decord", marks=needs_decord), "pyav"])
def test_multi_stream_file_uses_best_stream(reader: str) -> None:
    r = open_video(VIDEOS / "nasa_13013.mp4", reader)
    assert r.num_frames == 390 and r.frame_size() == (270, 480)
    assert r.fps == pytest.approx(30000 / 1001, rel=1e-4)


def test_unknown_reader_is_refused() -> None:
    with pytest.raises(ValueError, match="reader='opencv'"):
        resolve_reader("opencv")


def test_fallback_to_pyav_when_decord_is_missing(monkeypatch: pytest.MonkeyPatch, caplog, tmp_path: Path) -> None:
    from hjepa.data.synthetic import encode_video

    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` raise ImportError
    monkeypatch.setattr(readers, "_decord_checked", False)
    monkeypatch.setattr(readers, "_decord_module", None)
    monkeypatch.setattr(readers, "_fallback_logged", False)
    path = tmp_path / "v.mp4"
    encode_video(path, np.zeros((4, 32, 32, 3), np.uint8), fps=8)
    with caplog.at_level(logging.INFO, logger="hjepa.data.readers"):
        assert not readers.decord_available()
        r1 = open_video(path, "decord")
        r2 = open_video(path, "decord")
    assert isinstance(r1, PyAVReader) and isinstance(r2, PyAVReader)
    assert r1.get_batch([0, 3]).shape == (2, 32, 32, 3)
    notes = [r for r in caplog.records if "PyAV" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelno == logging.INFO
