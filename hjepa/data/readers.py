"""Video readers: decord by default, PyAV as fallback and as a choice.

Both readers return the same frames for the same indices:
``reader.get_batch(indices) -> uint8 [T, H, W, C]`` (RGB, ``T = len(indices)``).

Decisions, stated once here:

* **decord bridge.** decord's native NDArray is converted with ``.asnumpy()`` and wrapped with
  ``torch.from_numpy`` (no copy). decord's torch bridge (``decord.bridge.set_bridge``) is
  process-global state that would change the return type of every other decord user in the
  process, so it is left alone.
* **Fallback.** ``reader="decord"`` falls back to PyAV, with one info log per process, when decord
  cannot be imported (decord has wheels for x86-64 Linux only).
* **Stream.** Both readers decode the "best" video stream as FFmpeg's ``av_find_best_stream``
  chooses it (decord calls it; PyAV exposes it as ``container.streams.best("video")``). For a file
  with two video streams such as ``nasa_13013.mp4`` that is stream 3 (480x270, 390 frames), not
  stream 0 (320x180, 325 frames).
* **Frame count.** ``num_frames`` is the number of non-empty video packets, which is what decord
  reports. A few files declare one frame more than the decoder returns (the HMDB51 packed-bitstream
  DivX ``.avi`` files: 73 declared, 72 decoded). An index past the last decodable frame returns the
  last decoded frame, in both readers (decord does this natively; PyAV copies it).
* **Indexing.** Frame ``i`` is the ``i``-th frame in display order (count-based), as decord returns
  it. PyAV seeks to the key frame before a wanted frame when one lies ahead of the decoder, and maps
  decoded frames to indices by their presentation time stamp; if those time stamps turn out not to
  match the packet table (packed-bitstream AVI reorders them), it decodes from the start and counts
  frames instead. decord seeks by time stamp too, and gets packed-bitstream AVI wrong (asked for
  frame 24 of an HMDB51 clip it returns frame 4, after a seek to the key frame at 20); where its
  time-stamp table is missing (it reports huge negative times, as for every AVI here) the decord
  reader therefore decodes sequentially from frame 0 with ``next()``. Correctness is checked on
  every shared clip against PyAV's count-based decoding.
* **Rotation.** Display-matrix rotation (phone videos, ``video_90/180/270.mov``) is honoured by both:
  decord applies it while decoding, PyAV frames are rotated with ``numpy.rot90`` by
  ``frame.rotation``. ``height``/``width`` are those of the displayed (rotated) frame.
* **Colour.** Both convert YUV to RGB with FFmpeg's swscale at default settings. On the shared clips
  the two readers are bit-identical except the two UCF101 MPEG-4 ``.avi`` files (a few values in a
  million off by 1-2: the two FFmpeg builds' MPEG-4 IDCTs differ). The tests allow a mean absolute
  difference of 1 grey level and 2 % of values off by more than 2, because decord's wheel bundles
  its own, older FFmpeg whose decoders and SIMD YUV->RGB paths may round differently on other
  machines or builds.
* **Errors.** Anything that prevents decoding (missing, empty, not a video, no video stream,
  truncated, decoder error) raises :class:`VideoReadError` naming the file and the reason. Callers
  decide to skip; readers never retry.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from hjepa.errors import UserError

from .native_log import without_decord_log

log = logging.getLogger(__name__)

READERS = ("decord", "pyav")

_decord_module: Any = None
_decord_checked = False
_fallback_logged = False


class VideoReadError(UserError, RuntimeError):
    """A video that cannot be decoded. ``path`` and ``reason`` are kept for skip reports."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of one video as a reader sees it (``height``/``width`` after rotation)."""

    path: str
    num_frames: int
    fps: float
    duration: float  # seconds, = num_frames / fps
    height: int
    width: int
    reader: str


def _import_decord() -> Any:
    """Import decord once per process; ``None`` when it is not installed."""
    global _decord_module, _decord_checked
    if not _decord_checked:
        _decord_checked = True
        try:
            import decord  # noqa: PLC0415

            # decord's bundled FFmpeg logs every decoder hiccup to stderr; our warnings name the file.
            decord.logging.set_level(decord.logging.QUIET)
            _decord_module = decord
        except ImportError:
            _decord_module = None
    return _decord_module


def decord_available() -> bool:
    """True when decord can be imported here."""
    return _import_decord() is not None


def resolve_reader(name: str) -> str:
    """Validate a reader name and apply the decord -> PyAV fallback.

    Raises ``ValueError`` for an unknown name. Logs one info line per process on fallback.
    """
    global _fallback_logged
    if name not in READERS:
        raise ValueError(f"reader={name!r} is not one of {READERS}")
    if name == "decord" and not decord_available():
        if not _fallback_logged:
            log.info("decord is not importable here; decoding video with PyAV instead")
            _fallback_logged = True
        return "pyav"
    return name


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoReadError(path, "file does not exist")
    if os.path.isdir(path):
        raise VideoReadError(path, "is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")


_DECORD_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ")


def _first_line(err: BaseException) -> str:
    """A short reason from a decoder exception (decord's source-location prefixes removed)."""
    lines = [_DECORD_PREFIX.sub("", ln).strip() for ln in str(err).strip().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("Stack trace")]
    return lines[0][:160] if lines else type(err).__name__


class DecordReader:
    """decord-backed reader. ``threads``: decoder threads (0 = decord's automatic choice)."""

    name = "decord"

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        self.path = str(path)
        _check_file(self.path)
        decord = _import_decord()
        if decord is None:
            raise ImportError("decord is not installed; use reader='pyav'")
        try:
            with without_decord_log():  # the exception below is the report; decord's C++ line is noise
                self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=threads)
                self.num_frames = len(self._vr)
                self.fps = float(self._vr.get_avg_fps())
                ends = self._vr.get_frame_timestamp([0, self.num_frames - 1])
        except Exception as err:  # decord raises DECORDError or RuntimeError for unreadable input
            raise VideoReadError(self.path, f"cannot open as video ({_first_line(err)})") from err
        if self.num_frames < 1 or self.fps <= 0:
            raise VideoReadError(self.path, "video stream holds no frames or has no frame rate")
        # decord seeks by time stamp. Where its table has none (AVI files: it reports huge negative
        # numbers) its random access returns wrong frames on packed-bitstream DivX (HMDB51 asked for
        # frame 24 returns frame 4), so such files are decoded sequentially from the start.
        self.sequential = not (np.isfinite(ends).all() and ends[0, 0] >= 0 and ends[1, 0] >= ends[0, 0])
        self._size: tuple[int, int] | None = None

    @property
    def duration(self) -> float:
        """Seconds: num_frames / fps."""
        return self.num_frames / self.fps

    def frame_size(self) -> tuple[int, int]:
        """(height, width) of displayed frames; decodes frame 0 the first time."""
        if self._size is None:
            self._size = tuple(self.get_batch([0]).shape[1:3])  # type: ignore[assignment]
        return self._size  # type: ignore[return-value]

    def get_batch(self, indices: Sequence[int]) -> torch.Tensor:
        """indices: frame numbers in [0, num_frames) -> uint8 [T, H, W, C]."""
        idx = _check_indices(self.path, indices, self.num_frames)
        try:
            with without_decord_log():
                if self.sequential:
                    arr = self._get_sequential(idx)
                else:
                    arr = self._vr.get_batch(idx).asnumpy()
        except Exception as err:
            raise VideoReadError(self.path, f"decoding failed ({_first_line(err)})") from err
        return torch.from_numpy(arr)

    def _get_sequential(self, idx: list[int]) -> np.ndarray:
        """Decode frames 0..max(idx) in order with ``next()`` (``skip_frames`` seeks, so is not used)."""
        wanted = set(idx)
        got: dict[int, np.ndarray] = {}
        self._vr.seek(0)
        for i in range(max(idx) + 1):
            frame = self._vr.next()
            if i in wanted:
                got[i] = frame.asnumpy()
        return np.stack([got[i] for i in idx])

    def close(self) -> None:
        self._vr = None

    def __enter__(self) -> "DecordReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PtsMismatch(Exception):
    """Decoded time stamps do not match the packet table: index by counting instead."""


class PyAVReader:
    """PyAV-backed reader that seeks to key frames when it saves decoding.

    ``threads``: codec threads (0 = FFmpeg's automatic choice).
    """

    name = "pyav"

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        import av  # noqa: PLC0415  (imported lazily so the module imports without PyAV)

        self._av = av
        self.path = str(path)
        _check_file(self.path)
        self.threads = threads
        try:
            self._container = av.open(self.path)
        except Exception as err:
            raise VideoReadError(self.path, f"cannot open as video ({_first_line(err)})") from err
        try:
            self._stream = self._container.streams.best("video")
        except Exception:
            self._stream = None
        if self._stream is None:
            self.close()
            raise VideoReadError(self.path, "has no video stream")
        # Set before the codec opens (at the first decode). Frame threading adds one frame of
        # latency per thread, which only pays when several cores are free.
        ctx = self._stream.codec_context
        ctx.thread_count = threads
        ctx.thread_type = "AUTO" if threads != 1 else "SLICE"
        self._index_packets()
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        self.fps = float(rate) if rate else 0.0
        if self.fps <= 0:
            self.close()
            raise VideoReadError(self.path, "has no frame rate")
        self._size: tuple[int, int] | None = None
        self.frames_decoded = 0  # decoder output so far (the benchmark and tests read it)
        self._frames: Any = None  # the running decode generator, kept between calls
        self._pos, self._prev_raw = -1, None
        self.seeks = 0
        # Switched off once decoded time stamps disagree with the packet table (packed AVI).
        self._pts_ok = self._pts_table is not None

    # -- packet table ---------------------------------------------------------------------
    def _index_packets(self) -> None:
        """Demux (no decoding) to count frames and find key frames, as decord does at open."""
        pts: list[int | None] = []
        keys: list[bool] = []
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:  # the flush packet at the end, and empty placeholders
                    continue
                pts.append(packet.pts)
                keys.append(bool(packet.is_keyframe))
        except Exception as err:
            self.close()
            raise VideoReadError(self.path, f"demuxing failed ({_first_line(err)})") from err
        declared = int(self._stream.frames or 0)
        if not pts:
            self.close()
            raise VideoReadError(self.path, "video stream holds no frames")
        if declared > len(pts):
            self.close()
            raise VideoReadError(
                self.path, f"truncated: header declares {declared} frames, {len(pts)} present"
            )
        self.num_frames = len(pts)
        self._pts_table: list[int] | None = None
        self._key_index: list[int] = []
        if all(p is not None for p in pts) and len(set(pts)) == len(pts):
            order = sorted(pts)  # type: ignore[type-var]
            self._pts_table = order  # display-order time stamp of frame i
            self._pts_to_index = {p: i for i, p in enumerate(order)}
            self._key_index = sorted(self._pts_to_index[p] for p, k in zip(pts, keys) if k)
        self._rewind()

    def _rewind(self) -> None:
        self._container.seek(0, backward=True, any_frame=False, stream=self._stream)

    # -- metadata -------------------------------------------------------------------------
    @property
    def duration(self) -> float:
        """Seconds: num_frames / fps."""
        return self.num_frames / self.fps

    def frame_size(self) -> tuple[int, int]:
        """(height, width) of displayed frames; decodes frame 0 the first time (for rotation)."""
        if self._size is None:
            self._size = tuple(self.get_batch([0]).shape[1:3])  # type: ignore[assignment]
        return self._size  # type: ignore[return-value]

    # -- decoding -------------------------------------------------------------------------
    def _to_rgb(self, frame: Any) -> np.ndarray:
        arr = frame.to_ndarray(format="rgb24")
        k = (int(getattr(frame, "rotation", 0) or 0) // 90) % 4
        return np.ascontiguousarray(np.rot90(arr, k)) if k else arr

    def _decoder(self) -> Any:
        return self._container.decode(self._stream)

    def get_batch(self, indices: Sequence[int]) -> torch.Tensor:
        """indices: frame numbers in [0, num_frames) -> uint8 [T, H, W, C]."""
        idx = _check_indices(self.path, indices, self.num_frames)
        wanted = sorted(set(idx))
        try:
            if self._pts_ok:
                try:
                    got = self._decode_by_pts(wanted)
                except _PtsMismatch:
                    self._pts_ok = False
                    got = self._decode_by_count(wanted)
            else:
                got = self._decode_by_count(wanted)
        except VideoReadError:
            raise
        except Exception as err:
            raise VideoReadError(self.path, f"decoding failed ({_first_line(err)})") from err
        return torch.from_numpy(np.stack([got[i] for i in idx]))

    def _decode_by_count(self, wanted: list[int]) -> dict[int, np.ndarray]:
        """Decode from the start, frame i = i-th decoded frame (ground truth, no seeking)."""
        self._frames = None
        self._rewind()
        out: dict[int, np.ndarray] = {}
        want, raw = 0, None
        for pos, frame in enumerate(self._decoder()):
            self.frames_decoded += 1
            raw = frame
            if pos == wanted[want]:
                rgb = self._to_rgb(frame)
                while want < len(wanted) and wanted[want] == pos:
                    out[wanted[want]] = rgb
                    want += 1
                if want == len(wanted):
                    return out
        return self._fill_tail(out, wanted, want, None if raw is None else self._to_rgb(raw))

    def _fill_tail(
        self, out: dict[int, np.ndarray], wanted: list[int], want: int, last: np.ndarray | None
    ) -> dict[int, np.ndarray]:
        """Indices past the last decodable frame get the last decoded frame (as decord)."""
        if last is None:
            raise VideoReadError(self.path, f"no frame decodes at or before index {wanted[want]}")
        for j in wanted[want:]:
            out[j] = last
        return out

    def _decode_by_pts(self, wanted: list[int]) -> dict[int, np.ndarray]:
        """Seek to the key frame before a wanted frame when that skips decoding work.

        The decoder's position is kept between calls, so reading a video in consecutive chunks
        decodes every frame once.
        """
        assert self._pts_table is not None
        out: dict[int, np.ndarray] = {}
        frames, pos, prev_raw = self._frames, self._pos, self._prev_raw
        prev: np.ndarray | None = None  # prev_raw converted, when it was needed
        self._frames = None  # invalid until this call returns normally
        want = 0
        while want < len(wanted):
            target = wanted[want]
            k = bisect.bisect_right(self._key_index, target) - 1
            key = self._key_index[k] if k >= 0 else 0
            if frames is None or target <= pos or key > pos + 1:
                # Behind the decoder, or a key frame lies between it and the target: seek.
                self._container.seek(
                    self._pts_table[key], backward=True, any_frame=False, stream=self._stream
                )
                frames = self._decoder()
                self.seeks += 1
                seek_to, first, pos, prev_raw, prev = key, True, -1, None, None
            else:
                seek_to, first = None, False
            done_segment = False
            for frame in frames:
                self.frames_decoded += 1
                index = self._pts_to_index.get(frame.pts) if frame.pts is not None else None
                if index is None:
                    raise _PtsMismatch
                if seek_to is not None and index < seek_to:
                    continue  # leading frames of an open GOP, decoded without their references
                if first and index != seek_to:
                    raise _PtsMismatch  # the seek did not land where the table says
                if index <= pos:
                    raise _PtsMismatch  # time stamps not increasing in display order
                first = False
                # A wanted index skipped by the decoder (no frame with its pts) takes the frame before.
                while want < len(wanted) and wanted[want] < index:
                    if prev is None and prev_raw is not None:
                        prev = self._to_rgb(prev_raw)
                    if prev is None:
                        raise _PtsMismatch
                    out[wanted[want]] = prev
                    want += 1
                pos, prev_raw, prev = index, frame, None
                if want < len(wanted) and wanted[want] == index:
                    prev = self._to_rgb(frame)
                    while want < len(wanted) and wanted[want] == index:
                        out[wanted[want]] = prev
                        want += 1
                if want == len(wanted):
                    self._frames, self._pos, self._prev_raw = frames, pos, prev_raw
                    return out
                nk = bisect.bisect_right(self._key_index, wanted[want]) - 1
                if nk >= 0 and self._key_index[nk] > pos + 1:
                    done_segment = True  # cheaper to seek again
                    break
            if not done_segment:
                # End of stream: the remaining indices lie past the last decodable frame.
                if prev is None and prev_raw is not None:
                    prev = self._to_rgb(prev_raw)
                if prev is None:
                    raise _PtsMismatch  # nothing decoded after the seek: let counting decide
                return self._fill_tail(out, wanted, want, prev)
        return out

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
            self._container = None

    def __enter__(self) -> "PyAVReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


VideoReader = DecordReader | PyAVReader


def _check_indices(path: str, indices: Sequence[int], num_frames: int) -> list[int]:
    idx = [int(i) for i in indices]
    if not idx:
        raise ValueError(f"{path}: no frame indices asked for")
    bad = [i for i in idx if i < 0 or i >= num_frames]
    if bad:
        raise ValueError(f"{path}: frame indices {bad[:5]} outside [0, {num_frames})")
    return idx


def open_video(path: str | os.PathLike, reader: str = "decord", threads: int = 1) -> VideoReader:
    """Open ``path`` with ``reader`` ('decord' falls back to 'pyav' when decord is missing).

    Raises :class:`VideoReadError` when the file cannot be opened as a video.
    """
    name = resolve_reader(reader)
    cls = DecordReader if name == "decord" else PyAVReader
    return cls(path, threads=threads)


def video_info(path: str | os.PathLike, reader: str = "decord", threads: int = 1) -> VideoInfo:
    """Open, read the metadata (decoding frame 0 for the displayed size) and close."""
    r = open_video(path, reader, threads)
    try:
        h, w = r.frame_size()
        return VideoInfo(
            path=str(path),
            num_frames=r.num_frames,
            fps=r.fps,
            duration=r.duration,
            height=int(h),
            width=int(w),
            reader=r.name,
        )
    finally:
        r.close()
