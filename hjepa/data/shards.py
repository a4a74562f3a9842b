"""Videos in streaming shards: a manifest written into chunks, read back as training clips.

The engine is Lightning's ``litdata``: ``litdata.optimize`` writes the chunks (plus an
``index.json``) to a folder or an object store (``s3://``, ``gs://``, ``azure://``), and
``litdata.StreamingDataset`` reads them back through a local chunk cache. litdata assigns whole
chunks to each DDP rank and each loader worker (so they read distinct shards), and its
``StreamingDataLoader`` has a ``state_dict`` that Lightning saves in every checkpoint, so a
resumed run continues at the sample where it stopped.

An item is one video as its **encoded bytes** (not decoded frames: a shard is as large as the
files it holds) with its manifest fields. Every field has litdata's own serializer (bytes, str,
int, float); nothing is pickled on write or read. A video that cannot be decoded is found when
it is read, skipped with one warning and counted exactly as a bad file of a manifest is.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from litdata import StreamingDataLoader, StreamingDataset
from litdata.streaming.serializers import Serializer

from hjepa.data.dataset import FailedSample, VideoClipDataset, warn_once
from hjepa.data.manifests import VideoRow, read_manifest
from hjepa.data.readers import VideoReadError, video_info
from hjepa.errors import UserError

NO_FRAME = -1  # start_frame / end_frame of a row without a frame range (litdata stores no None)


class ShardError(UserError, ValueError):
    """Shards that cannot be written or read; the message names the folder and the fix."""


# litdata serializers that can run pickle.loads on read (the graph one falls back to it): an
# index.json naming one of them for a field is refused rather than trusted.
_PICKLING_SERIALIZERS = ("pickle", "graph")


class _NoPickle(Serializer):
    """Stands in for litdata's pickle-based serializers on read: refuses instead of unpickling."""

    def serialize(self, item: Any) -> tuple[bytes, str | None]:
        raise ShardError("hjepa shards hold bytes, strings and numbers only; this item needs pickle")

    def deserialize(self, data: bytes) -> Any:
        raise ShardError("a shard field is stored as a pickle; hjepa never unpickles data "
                         "(write the shards again with `hjepa shard`)")

    def can_serialize(self, item: Any) -> bool:
        return False


@dataclass
class ShardReport:
    """What ``write_shards`` wrote: videos in the shards, rows left out (missing files), where."""

    videos: int
    missing: list[str]
    out: str
    bytes: int


def _item(row: VideoRow) -> dict[str, Any]:
    """One manifest row -> one shard item (the file's bytes and its manifest fields)."""
    data = Path(row.path).read_bytes()
    try:
        fps = float(video_info(row.path, "pyav").fps)
    except VideoReadError:
        fps = 0.0  # undecodable: kept, so that it is skipped and counted where it is read
    # Strings that name a video file would be taken by litdata's video serializer (which decodes
    # with torchcodec): the path is stored as bytes, and only the file's extension as a string.
    return {
        "video": data,
        "suffix": Path(row.path).suffix.lower() or ".mp4",
        "path": row.path.encode(),
        "label": int(row.label),
        "start_frame": NO_FRAME if row.start_frame is None else int(row.start_frame),
        "end_frame": NO_FRAME if row.end_frame is None else int(row.end_frame),
        "fps": fps,
    }


def write_shards(manifest: str | os.PathLike, out: str, chunk_bytes: str = "64MB", workers: int = 1) -> ShardReport:
    """Write the videos of ``manifest`` into litdata chunks under ``out`` (a folder or a URL).

    The items keep the manifest's order (item i = the i-th present row). Rows whose file does not
    exist are left out and returned in ``missing``; files that exist are written whatever they
    hold (a bad one is counted when it is read, as for files).
    """
    from litdata import optimize

    rows = read_manifest(manifest)
    present = [r for r in rows if Path(r.path).is_file()]
    missing = [r.path for r in rows if not Path(r.path).is_file()]
    if not present:
        raise ShardError(f"{manifest}: none of its {len(rows)} videos exists; nothing to write")
    if "://" not in str(out) and Path(out).exists() and any(Path(out).iterdir()):
        raise ShardError(f"{out} is not empty; write shards into a new folder")
    # optimize() sets the process-wide multiprocessing start method and leaves it so, which
    # changes how every later DataLoader starts its workers: put the caller's back. Fork where
    # there is one: a spawned writer re-imports torch first (seconds) to copy bytes.
    before = multiprocessing.get_start_method(allow_none=True)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    try:
        optimize(fn=_item, inputs=present, output_dir=str(out), chunk_bytes=chunk_bytes, num_workers=workers,
                 keep_data_ordered=True, reorder_files=False, verbose=False, start_method=method)
    finally:
        multiprocessing.set_start_method(before, force=True)
    size = sum(f.stat().st_size for f in Path(out).glob("*.bin")) if "://" not in str(out) else 0
    return ShardReport(videos=len(present), missing=missing, out=str(out), bytes=size)


class ShardClipDataset(StreamingDataset):
    """Training clips from shards: each item's bytes go through ``clips`` (the same sampling,
    decoding and augmentation as a manifest's files).

    Args:
        shards: the folder or URL ``write_shards`` wrote.
        clips: a training :class:`VideoClipDataset` (its rows are unused) that turns a file into
            a clip: its sampler, transform, reader and minimum frame side.
        seed: shuffles the chunk and item order each epoch, and seeds each sample's randomness
            from (seed, epoch, item), so a sample depends on nothing but where it is in the run.
        cache_dir: local chunk cache for remote shards (litdata's default when None).
    """

    def __init__(self, shards: str, clips: VideoClipDataset, seed: int = 0, cache_dir: str | None = None) -> None:
        if "://" not in shards and not (Path(shards) / "index.json").is_file():
            raise ShardError(f"{shards}: no shards here (index.json missing); write them with "
                             "`hjepa shard --manifest M --out DIR`")
        super().__init__(shards, cache_dir=cache_dir, shuffle=True, drop_last=False, seed=seed,
                         serializers={name: _NoPickle() for name in _PICKLING_SERIALIZERS})
        self.clips = clips
        self.sample_seed = int(seed)

    def _generator(self, index: int) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed((self.sample_seed * 1_000_003 + self.current_epoch) * 1_000_033 + index)
        return g

    def __getitem__(self, index: Any) -> dict[str, torch.Tensor] | FailedSample:
        item = super().__getitem__(index)
        i = int(getattr(index, "index", index))
        path = bytes(item["path"]).decode()
        # The readers open files (decord and PyAV's seeking both want one): a private local copy.
        with tempfile.NamedTemporaryFile(suffix=item["suffix"]) as f:
            f.write(item["video"])
            f.flush()
            row = VideoRow(f.name, item["label"],
                           None if item["start_frame"] == NO_FRAME else item["start_frame"],
                           None if item["end_frame"] == NO_FRAME else item["end_frame"])
            try:
                return self.clips.load_clip(row, i, 0, self._generator(i))
            except self.clips.SKIPPED as err:
                reason = err.reason if isinstance(err, VideoReadError) else str(err)
                warn_once(path, reason)
                return FailedSample(path, reason, i)

    def source_fps(self, sample: int = 16) -> list[float]:
        """The frame rates of (up to ``sample`` of) the videos, from the shard items."""
        n = min(sample, len(self))
        return [float(StreamingDataset.__getitem__(self, i)["fps"]) for i in range(n)]


class ShardLoader(StreamingDataLoader):
    """litdata's loader, with a resumed epoch that ends where the trainer ends it.

    After ``load_state_dict`` litdata replays from the saved position and clears its ``restore``
    flag only when an epoch's iterator runs to exhaustion. Lightning stops an epoch after its
    known number of batches without exhausting the iterator, so the flag stayed set and the
    epoch after a resumed one replayed the resumed epoch's tail instead of starting a new,
    reshuffled epoch: a killed run then trained on other clips than the uninterrupted one.
    Here the flag holds for the first ``__iter__`` after a load only.
    """

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        super().load_state_dict(obj)
        self._resumed_epoch_pending = True

    def __iter__(self) -> Any:
        if not getattr(self, "_resumed_epoch_pending", False):
            self.restore = False  # a new epoch: reset the position and reshuffle, as uninterrupted
        self._resumed_epoch_pending = False
        return super().__iter__()
