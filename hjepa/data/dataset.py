"""Datasets that yield clips, and the collate function that batches them.

A sample is a dict (see the data batch contract):

* ``clip``: uint8 [T, H, W, C], T = frames_per_window * num_windows;
* ``frame_index``: long [T] source frame of every clip frame;
* ``fps``: float [] source fps; ``label``: long [] (-1 = none); ``video_index``: long [] row of
  the dataset's row list; ``clip_index``: long [] which evaluation clip of the video (0 in
  training);
* synthetic data adds ``activity``: long [T] and ``positions``: float [T, num_objects, 2];
* with a frame-action table, ``actions``: long [T], the action taken in each clip frame
  (``hjepa.data.frame_actions``).

A video that cannot be used (missing, undecodable, too small, too short under
``short_video="skip"``) gives a :class:`FailedSample` instead, with one warning per file and
process; :class:`ClipCollator` drops those and counts them in the batch's ``skipped``.

Randomness (clip start, crop, flip) comes from a generator owned by the dataset and seeded per
process from ``(seed, torch.initial_seed(), worker id, global rank)``: DataLoader workers, epochs
(PyTorch draws a new worker base seed per epoch) and distributed ranks all differ, and the
process's global RNG is not consumed. A sample may also be asked for as ``(index, seed)``: its
randomness then comes from ``seed`` alone, which is how training makes the data stream a
function of the (checkpointed) sampler state, for exact resume (``hjepa.data.row_samplers``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from .frame_actions import clip_actions, video_id_of
from .manifests import VideoRow
from .readers import VideoReadError, open_video, resolve_reader, video_info
from .sampling import ClipSampler, ShortVideo
from .synthetic import SyntheticVideos
from .transforms import FrameTooSmall, check_frame_size

log = logging.getLogger(__name__)

MIN_FRAMES = 2  # a still image or a one-frame file is not a video
_warned: set[str] = set()  # files already warned about in this process


def warn_once(path: str, reason: str) -> None:
    """One warning per file and process, naming the file and why it is skipped."""
    if path not in _warned:
        _warned.add(path)
        log.warning("skipping video %s: %s", path, reason)


@dataclass(frozen=True)
class FailedSample:
    """Stands in for a sample whose video could not be used."""

    path: str
    reason: str
    video_index: int


def global_rank() -> int:
    """This process's rank in a distributed run (0 when not distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))


class _SeededDataset(Dataset):
    """Owns a torch.Generator re-seeded in every process that uses the dataset."""

    seed: int = 0

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self._gen: torch.Generator | None = None
        self._gen_owner: tuple[int, int] | None = None

    def generator(self) -> torch.Generator:
        info = get_worker_info()
        owner = (os.getpid(), -1 if info is None else info.id)
        if self._gen is None or self._gen_owner != owner:
            # In a worker torch.initial_seed() = per-epoch base seed + worker id; in the main
            # process the generator persists and advances across epochs.
            base = torch.initial_seed() if info is not None else 0
            ss = np.random.SeedSequence([self.seed, base % 2**63, owner[1] + 1, global_rank()])
            self._gen = torch.Generator().manual_seed(int(ss.generate_state(1, np.uint64)[0] >> 1))
            self._gen_owner = owner
        return self._gen

    def _resolve(self, key: Any) -> tuple[int, torch.Generator]:
        """``key`` -> (sample index, generator for its randomness).

        ``(index, seed)`` (what :class:`hjepa.data.row_samplers.SeededRowSampler` yields) gets a
        generator seeded with ``seed``, so the sample depends on nothing but its key; a plain
        index uses this process's generator.
        """
        if isinstance(key, (tuple, list)):
            index, seed = key
            return int(index), torch.Generator().manual_seed(int(seed))
        return int(key), self.generator()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_gen"] = None  # generators do not pickle; workers make their own
        state["_gen_owner"] = None
        return state


class VideoClipDataset(_SeededDataset):
    """Clips from video files listed as manifest rows.

    Args:
        rows: the videos (:func:`hjepa.data.manifests.read_manifest`).
        sampler: which frames make a clip.
        transform: ``(clip uint8 [T, H, W, C], generator) -> uint8 [T, R, R, C]``, or None.
        train: random clip per video (True) or ``clips_per_video`` evenly spaced clips (False).
        clips_per_video: evaluation clips per video; the dataset has ``len(rows) * clips_per_video``
            samples in evaluation.
        reader: 'decord' (falls back to PyAV when missing) or 'pyav'.
        min_side: frames whose shorter side is smaller are refused (see transforms).
        decode_threads: decoder threads per video.
        seed: seed of the sampling randomness.
        frame_actions: ``{video_id: long [n_frames]}`` (``read_frame_actions``): samples then carry
            their frames' ``actions``; a video with none listed, or listed for another frame
            count, is skipped like an unreadable one.
    """

    def __init__(
        self,
        rows: Sequence[VideoRow],
        sampler: ClipSampler,
        transform: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None,
        train: bool = True,
        clips_per_video: int = 1,
        reader: str = "decord",
        min_side: int = 16,
        decode_threads: int = 1,
        seed: int = 0,
        frame_actions: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__(seed)
        if clips_per_video < 1:
            raise ValueError(f"clips_per_video={clips_per_video}: must be >= 1")
        self.rows = list(rows)
        self.sampler = sampler
        self.transform = transform
        self.train = train
        self.clips_per_video = 1 if train else int(clips_per_video)
        self.reader = resolve_reader(reader)
        self.min_side = int(min_side)
        self.decode_threads = int(decode_threads)
        self.frame_actions = frame_actions

    # What makes a video skipped (one warning, counted) rather than a run stopped.
    SKIPPED = (VideoReadError, FrameTooSmall, ShortVideo)

    def __len__(self) -> int:
        return len(self.rows) * self.clips_per_video

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor] | FailedSample:
        i, gen = self._resolve(key)
        video_index, clip_index = divmod(i, self.clips_per_video)
        row = self.rows[video_index]
        try:
            return self.load_clip(row, video_index, clip_index, gen)
        except self.SKIPPED as err:
            reason = err.reason if isinstance(err, VideoReadError) else str(err)
            warn_once(row.path, reason)
            return FailedSample(row.path, reason, video_index)

    def load_clip(self, row: VideoRow, video_index: int, clip_index: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """The clip of ``row`` (one of :attr:`SKIPPED` when the video cannot give one)."""
        with open_video(row.path, self.reader, self.decode_threads) as video:
            n, fps = video.num_frames, video.fps
            if n < MIN_FRAMES:
                raise VideoReadError(row.path, f"{n} frame(s); a video needs >= {MIN_FRAMES}")
            if self.train:
                frames = self.sampler.train_clip(n, fps, gen, row.start_frame, row.end_frame)
            else:
                clips = self.sampler.eval_clips(n, fps, self.clips_per_video, row.start_frame, row.end_frame)
                frames = clips[clip_index]
            clip = video.get_batch(frames.tolist())  # uint8 [T, H, W, C]
        check_frame_size(clip.shape[1], clip.shape[2], self.min_side)
        extra = {}
        if self.frame_actions is not None:
            acts = self.frame_actions.get(video_id_of(row.path))
            if acts is None:
                raise VideoReadError(row.path, f"no actions listed for video id {video_id_of(row.path)!r}")
            if acts.shape[0] != n:
                raise VideoReadError(row.path, f"{acts.shape[0]} frame actions listed for a video of {n} frames")
            # Every frame once, in order: a skipped frame loses an action, a repeated one pairs one action
            # with two frames. Only the padding after a short video's last frame repeats it.
            steps, later = frames.diff(), frames[1:]
            if bool(((steps != 1) & (later != n - 1)).any() or (steps < 0).any()):  # a setting: stop, do not skip
                raise ValueError(f"{row.path}: a clip with actions must take every frame, this one takes frames "
                                 f"{frames[:4].tolist()}...: sample at the video's own rate ({fps:g} fps)")
            extra["actions"] = clip_actions(acts, frames)
        if self.transform is not None:
            clip = self.transform(clip, gen if self.train else None)
        return {**extra,
            "clip": clip,
            "frame_index": frames,
            "fps": torch.tensor(fps, dtype=torch.float32),
            "label": torch.tensor(row.label, dtype=torch.long),
            "video_index": torch.tensor(video_index, dtype=torch.long),
            "clip_index": torch.tensor(clip_index, dtype=torch.long),
        }


class SyntheticClipDataset(_SeededDataset):
    """Clips of the synthetic hierarchical videos, generated on the fly (no files).

    ``video_index`` counts within the split; ``label`` is the video's recipe. Adds ``activity``
    long [T] and ``positions`` float [T, num_objects, 2] to every sample. Frames are rendered at the
    config's resolution and not augmented (a flip would turn ``slide-right`` into ``slide-left``).
    """

    def __init__(
        self,
        videos: SyntheticVideos,
        split: str,
        sampler: ClipSampler,
        train: bool = True,
        clips_per_video: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        self.videos = videos
        self.split = "validation" if split in ("val", "validation") else split
        self.indices = videos.split_range(self.split)
        self.sampler = sampler
        self.train = train
        self.clips_per_video = 1 if train else int(clips_per_video)
        if self.clips_per_video < 1:
            raise ValueError(f"clips_per_video={clips_per_video}: must be >= 1")

    def __len__(self) -> int:
        return len(self.indices) * self.clips_per_video

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor] | FailedSample:
        i, gen = self._resolve(key)
        video_index, clip_index = divmod(i, self.clips_per_video)
        g = self.indices[video_index]
        cfg = self.videos.config
        n, fps = cfg.frames_per_video, cfg.fps
        try:
            if self.train:
                frames = self.sampler.train_clip(n, fps, gen)
            else:
                frames = self.sampler.eval_clips(n, fps, self.clips_per_video)[clip_index]
        except ShortVideo as err:
            name = self.videos.video_id(g)
            warn_once(name, str(err))
            return FailedSample(name, str(err), video_index)
        v = self.videos.video(g)
        idx = frames.numpy()
        return {
            "clip": torch.from_numpy(self.videos.render(g, idx, video=v)),
            "frame_index": frames,
            "fps": torch.tensor(fps, dtype=torch.float32),
            "label": torch.tensor(v.recipe, dtype=torch.long),
            "video_index": torch.tensor(video_index, dtype=torch.long),
            "clip_index": torch.tensor(clip_index, dtype=torch.long),
            "activity": torch.from_numpy(v.activity[idx]),
            "positions": torch.from_numpy(v.positions[idx]),
        }


class ClipCollator:
    """Stack samples into a batch, dropping :class:`FailedSample`s.

    Adds ``skipped``: long [] (samples dropped from this batch) and ``skipped_files``: list[str].
    When every sample of a batch failed, the tensors have batch size 0 (shapes otherwise intact
    for ``clip``: [0, T, R, R, C]): a training step must skip such a batch.
    With ``mask_fn`` (``mask_fn(batch_size) -> (masks_enc, masks_pred)``, lists of long [B, K]),
    the batch also gets ``masks_enc`` and ``masks_pred``.
    """

    def __init__(
        self,
        num_frames: int,
        resolution: int,
        mask_fn: Callable[[int], tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]] | None = None,
        num_objects: int | None = None,
    ) -> None:
        self.num_frames = num_frames
        self.resolution = resolution
        self.mask_fn = mask_fn
        self.num_objects = num_objects

    def _empty(self) -> dict[str, torch.Tensor]:
        t, r = self.num_frames, self.resolution
        out = {
            "clip": torch.empty((0, t, r, r, 3), dtype=torch.uint8),
            "frame_index": torch.empty((0, t), dtype=torch.long),
            "fps": torch.empty(0),
            "label": torch.empty(0, dtype=torch.long),
            "video_index": torch.empty(0, dtype=torch.long),
            "clip_index": torch.empty(0, dtype=torch.long),
        }
        if self.num_objects is not None:
            out["activity"] = torch.empty((0, t), dtype=torch.long)
            out["positions"] = torch.empty((0, t, self.num_objects, 2))
        return out

    def __call__(self, samples: Sequence[dict[str, torch.Tensor] | FailedSample]) -> dict[str, Any]:
        good = [s for s in samples if not isinstance(s, FailedSample)]
        failed = [s for s in samples if isinstance(s, FailedSample)]
        batch: dict[str, Any] = (
            {k: torch.stack([s[k] for s in good]) for k in good[0]} if good else self._empty()
        )
        b = len(good)
        if self.mask_fn is not None:
            enc, pred = self.mask_fn(max(b, 1))
            batch["masks_enc"] = [m[:b] for m in enc]
            batch["masks_pred"] = [m[:b] for m in pred]
        batch["skipped"] = torch.tensor(len(failed), dtype=torch.long)
        batch["skipped_files"] = [f.path for f in failed]
        return batch


def check_rows(
    rows: Sequence[VideoRow], reader: str = "decord", min_side: int = 16, min_frames: int = MIN_FRAMES
) -> tuple[list[VideoRow], list[tuple[str, str]]]:
    """Header check at setup: open every video, read its metadata and decode frame 0.

    Returns (usable rows, [(path, reason), ...] for the rest). A video is unusable when it is
    missing or cannot be decoded, has fewer than ``min_frames`` frames (a still image or a
    one-frame file is not a video), or frames whose shorter side is below ``min_side``.
    Each refused file is warned about once. The check decodes frame 0 only, to stay cheap on
    large datasets: damage further in (a corrupt packet; with decord, a truncated file whose
    index comes first) is found, skipped and counted when the clip is loaded.
    """
    ok: list[VideoRow] = []
    bad: list[tuple[str, str]] = []
    for row in rows:
        try:
            info = video_info(row.path, reader)
            if info.num_frames < min_frames:
                raise VideoReadError(row.path, f"{info.num_frames} frame(s); a video needs >= {min_frames}")
            check_frame_size(info.height, info.width, min_side)
            if row.start_frame is not None and row.start_frame >= info.num_frames:
                raise VideoReadError(
                    row.path, f"start_frame {row.start_frame} past the last frame ({info.num_frames} frames)"
                )
        except (VideoReadError, FrameTooSmall) as err:
            reason = err.reason if isinstance(err, VideoReadError) else str(err)
            where = f" (manifest {row.source} row {row.row})" if row.row else ""
            warn_once(row.path, reason + where)
            bad.append((row.path, reason))
            continue
        ok.append(row)
    return ok, bad


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy and ``random`` per worker and rank.

    The datasets here do not need it (they own their generator); user transforms that call
    ``numpy.random`` or ``random`` do.
    """
    import random  # noqa: PLC0415

    ss = np.random.SeedSequence([torch.initial_seed() % 2**63, worker_id, global_rank()])
    a, b = ss.generate_state(2)
    np.random.seed(int(a))
    random.seed(int(b))
