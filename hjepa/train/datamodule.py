"""Lightning DataModule over video manifests or the built-in synthetic dataset.

Batches follow the data batch contract (``hjepa.data.dataset``): ``clip`` uint8
[B, T, H, W, C] (normalise on the device with ``hjepa.data.to_model_input``), ``frame_index``,
``fps``, ``label``, ``video_index``, ``clip_index``, ``skipped``, ``skipped_files``; synthetic data
adds ``activity`` and ``positions``; ``mask_fn`` adds ``masks_enc``/``masks_pred``.

The module knows nothing of the model: masks come from an optional ``mask_fn(batch_size) ->
(masks_enc, masks_pred)`` given by code.

Loaders are torchdata ``StatefulDataLoader``s, whose ``state_dict`` Lightning writes into every
checkpoint; training samples come as ``(row, seed)`` from ``hjepa.data.row_samplers``, so that
state alone fixes the rest of the data stream and a killed run resumes on the very same clips.
(A ``mask_fn`` that draws from its own generator inside loader workers is outside that state.)
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import warnings
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import lightning as L
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from hjepa.data.dataset import (
    ClipCollator,
    SyntheticClipDataset,
    VideoClipDataset,
    check_rows,
    seed_worker,
    warn_once,
)
from hjepa.data.frame_actions import read_frame_actions
from hjepa.data.manifests import VideoRow, mix_manifests
from hjepa.input_settings import InputSettings
from hjepa.data.readers import READERS, VideoReadError, resolve_reader, video_info
from hjepa.data.row_samplers import SeededRowSampler
from hjepa.data.sampling import SHORT_VIDEO_RULES, ClipSampler
from hjepa.data.synthetic import SyntheticConfig, SyntheticVideos
from hjepa.errors import UserError
from hjepa.data.transforms import EvalClipTransform, TrainClipTransform

log = logging.getLogger(__name__)

FPS_SAMPLE_VIDEOS = 32  # training videos whose header rates give the recorded source_fps


class NoUsableVideos(UserError, RuntimeError):
    """Every video of a manifest is missing or unreadable."""

MaskFn = Callable[[int], tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]]


class VideoDataModule(L.LightningDataModule):
    """Video clips for pretraining and evaluation.

    Args:
        train_manifests: training manifest(s): CSV, space-separated list or a folder; None (and no
            ``val_manifests``) uses the synthetic dataset.
        val_manifests: validation manifest(s); None: no validation set (manifest mode).
        shards: training videos streamed from shards instead of a manifest: the folder or URL
            (``s3://...``) that ``hjepa shard`` wrote (``hjepa.data.shards``).
        train_weights: one sampling weight per training manifest (mixing); None: concatenate.
        synthetic: synthetic dataset parameters, used when no manifest is given (None: defaults);
            its resolution is replaced by ``resolution``.
        reader: video decoder, 'decord' (falls back to 'pyav' when not importable) or 'pyav'.
        frames_per_window: frames per window (F); a clip has T = F * num_windows frames.
        num_windows: windows per clip.
        frame_step: take every frame_step-th source frame (exclusive with target_fps; default 1).
        target_fps: sample at this many frames per second of video (exclusive with frame_step).
        resolution: side of the square frames the model sees, in pixels.
        batch_size: clips per batch (per process).
        num_workers: DataLoader worker processes (0: load in the main process).
        pin_memory: pin batches in page-locked memory (for GPU training).
        persistent_workers: keep workers alive between epochs (only with num_workers > 0).
        clips_per_video: evenly spaced clips per video in validation.
        short_video: videos shorter than a clip: 'pad' (repeat the last frame) or 'skip'.
        crop_scale: area range of the training random-resized crop.
        crop_ratio: aspect-ratio range of the training random-resized crop.
        hflip: random horizontal flip in training (real videos only).
        min_side: videos whose frames' shorter side is below this many pixels are skipped.
        probe: open every video at setup (``check_rows``: skips and counts bad files early; ~5 ms a file).
        decode_threads: decoder threads per video (0: the decoder's own choice).
        seed: seed of clip sampling and augmentation (mixed with worker id and rank).
        drop_last: drop the last incomplete training batch.
        mask_fn: code-only: ``mask_fn(batch_size) -> (masks_enc, masks_pred)`` applied to every
            batch (lists of long [B, K]).
        train_actions, val_actions: per-frame action files (``video_id,frame,action``,
            ``hjepa.data.frame_actions``) of the training / validation videos, for an
            action-conditioned level 1: batches then carry ``actions`` long [B, T]. They need
            every frame (no ``frame_step`` above 1, a ``target_fps`` only at the videos' own rate:
            a clip that skips frames is refused) and no flips (a flip turns left into right).
    """

    def __init__(
        self,
        train_manifests: str | list[str] | None = None,
        val_manifests: str | list[str] | None = None,
        shards: str | None = None,
        train_weights: list[float] | None = None,
        synthetic: SyntheticConfig | None = None,
        reader: Literal["decord", "pyav"] = "decord",
        frames_per_window: int = 8,
        num_windows: int = 4,
        frame_step: int | None = None,
        target_fps: float | None = None,
        resolution: int = 64,
        batch_size: int = 8,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        clips_per_video: int = 1,
        short_video: Literal["pad", "skip"] = "pad",
        crop_scale: tuple[float, float] = (0.3, 1.0),
        crop_ratio: tuple[float, float] = (0.75, 1.35),
        hflip: bool = True,
        min_side: int = 16,
        probe: bool = True,
        decode_threads: int = 1,
        seed: int = 0,
        drop_last: bool = True,
        mask_fn: MaskFn | None = None,
        train_actions: str | None = None,
        val_actions: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["mask_fn"])
        _check("reader", reader, reader in READERS, f"must be one of {READERS}")
        _check("short_video", short_video, short_video in SHORT_VIDEO_RULES, f"must be one of {SHORT_VIDEO_RULES}")
        for key, value in (("frames_per_window", frames_per_window), ("num_windows", num_windows),
                           ("resolution", resolution), ("batch_size", batch_size),
                           ("clips_per_video", clips_per_video), ("min_side", min_side)):
            _check(key, value, isinstance(value, int) and value >= 1, "must be an integer >= 1")
        _check("num_workers", num_workers, num_workers >= 0, "must be >= 0")
        _check("decode_threads", decode_threads, decode_threads >= 0, "must be >= 0")
        _check("crop_scale", crop_scale, 0 < crop_scale[0] <= crop_scale[1] <= 1, "need 0 < low <= high <= 1")
        _check("crop_ratio", crop_ratio, 0 < crop_ratio[0] <= crop_ratio[1], "need 0 < low <= high")
        if shards is not None and train_manifests is not None:
            raise ValueError("give train_manifests or shards, not both")
        if train_manifests is None and shards is None and val_manifests is not None:
            raise ValueError("val_manifests is set but train_manifests is not: give both or neither")
        if train_manifests is not None and synthetic is not None:
            raise ValueError("give train_manifests or synthetic, not both")
        if train_weights is not None and train_manifests is None:
            raise ValueError("train_weights needs train_manifests")
        if train_actions is not None or val_actions is not None:
            _check("train_actions", train_actions, train_manifests is not None,
                   "per-frame actions go with train_manifests (not the synthetic world, not shards)")
            _check("val_actions", val_actions, train_actions is not None, "needs train_actions too")
            _check("val_actions", val_actions, (val_actions is None) == (val_manifests is None),
                   "give the validation videos' actions exactly when there are val_manifests")
            _check("frame_step", frame_step, frame_step in (None, 1), "actions need every frame: frame_step 1")
            _check("hflip", hflip, not hflip, "a flipped clip's actions are wrong (left becomes right): set hflip false")
        # Refuses frame_step together with target_fps, with the values.
        self.sampler = ClipSampler(frames_per_window, num_windows, frame_step, target_fps, short_video)
        self.train_manifests = train_manifests
        self.shards = shards
        self.val_manifests = val_manifests
        self.train_weights = train_weights
        self.synthetic = synthetic
        self.reader = reader
        self.resolution = resolution
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.clips_per_video = clips_per_video
        self.crop_scale = tuple(crop_scale)
        self.crop_ratio = tuple(crop_ratio)
        self.hflip = hflip
        self.min_side = min_side
        self.probe = probe
        self.decode_threads = decode_threads
        self.seed = seed
        self.drop_last = drop_last
        self.mask_fn = mask_fn
        self.train_actions, self.val_actions = train_actions, val_actions
        self.train_dataset: VideoClipDataset | SyntheticClipDataset | None = None
        self.val_dataset: VideoClipDataset | SyntheticClipDataset | None = None
        self._train_row_weights: list[float] | None = None
        self._skipped: dict[str, str] = {}  # file -> reason, from the setup check and from batches
        self._skipped_samples = 0  # samples dropped at load time (a file may count once per epoch)
        self._built = False
        self._input_settings: InputSettings | None = None

    @property
    def is_synthetic(self) -> bool:
        return self.train_manifests is None and self.shards is None

    @property
    def num_frames(self) -> int:
        """T, frames per clip."""
        return self.sampler.num_frames

    # -- setup ------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Build the datasets once (probing the videos of manifests)."""
        if self._built:
            return
        if self.is_synthetic:
            cfg = dataclasses.replace(self.synthetic or SyntheticConfig(), resolution=self.resolution)
            self.synthetic_config = cfg
            videos = SyntheticVideos(cfg)
            self.train_dataset = SyntheticClipDataset(videos, "train", self.sampler, True, seed=self.seed)
            self.val_dataset = SyntheticClipDataset(
                videos, "validation", self.sampler, False, self.clips_per_video, seed=self.seed
            )
            if len(self.train_dataset) == 0:
                raise UserError("synthetic.num_train_videos=0: no training video; set it to 1 or more")
        elif self.shards is not None:
            from hjepa.data.shards import ShardClipDataset

            resolve_reader(self.reader)
            self.train_dataset = ShardClipDataset(self.shards, self._video_dataset([], train=True), seed=self.seed)
            if self.val_manifests is not None:
                vrows, _ = mix_manifests(_as_list(self.val_manifests))
                vrows, _ = self._usable(vrows, [1.0] * len(vrows), "validation", self.val_manifests)
                self.val_dataset = self._video_dataset(vrows, train=False)
        else:
            resolve_reader(self.reader)  # logs the PyAV fallback once, here
            rows, weights = mix_manifests(_as_list(self.train_manifests), self.train_weights)
            rows, weights = self._usable(rows, weights, "training", self.train_manifests)
            self._train_row_weights = weights if self.train_weights is not None else None
            self.train_dataset = self._video_dataset(rows, train=True, actions=self.train_actions)
            if self.val_manifests is not None:
                vrows, _ = mix_manifests(_as_list(self.val_manifests))
                vrows, _ = self._usable(vrows, [1.0] * len(vrows), "validation", self.val_manifests)
                self.val_dataset = self._video_dataset(vrows, train=False, actions=self.val_actions)
        self._built = True

    def _usable(
        self, rows: list[VideoRow], weights: list[float], what: str, manifests: Any
    ) -> tuple[list[VideoRow], list[float]]:
        """Drop (and count) the rows whose video is missing or, with ``probe``, unusable."""
        if self.probe:
            ok, bad = check_rows(rows, self.reader, self.min_side)
        else:
            ok = [r for r in rows if Path(r.path).is_file()]
            bad = [(r.path, "file does not exist") for r in rows if not Path(r.path).is_file()]
            for path, why in bad:
                warn_once(path, why)
        self._skipped.update(dict(bad))
        if not ok:
            reasons = "; ".join(f"{p}: {why}" for p, why in bad[:3])
            raise NoUsableVideos(
                f"all {len(rows)} {what} videos of {manifests} are unusable ({len(bad)} skipped), "
                f"e.g. {reasons}. Fix or remove these rows (paths resolve relative to the manifest), "
                "or point the manifest option at another file"
            )
        if bad:
            log.warning("%d of %d %s videos skipped at setup", len(bad), len(rows), what)
        keep = {id(r) for r in ok}
        return ok, [w for r, w in zip(rows, weights) if id(r) in keep]

    def _video_dataset(self, rows: list[VideoRow], train: bool, actions: str | None = None) -> VideoClipDataset:
        transform = (
            TrainClipTransform(self.resolution, self.crop_scale, self.crop_ratio, self.hflip)
            if train
            else EvalClipTransform(self.resolution)
        )
        return VideoClipDataset(
            rows, self.sampler, transform, train, self.clips_per_video, self.reader,
            self.min_side, self.decode_threads, self.seed,
            frame_actions=None if actions is None else read_frame_actions(actions),
        )

    # -- loaders ----------------------------------------------------------------------------
    def collator(self) -> ClipCollator:
        n_obj = self.synthetic_config.num_objects if self.is_synthetic and self._built else None
        return ClipCollator(self.num_frames, self.resolution, self.mask_fn, n_obj)

    def _loader(self, dataset: Any, train: bool) -> StatefulDataLoader:
        """A resumable loader (torchdata's ``StatefulDataLoader``).

        Lightning saves its ``state_dict`` in every checkpoint and restores it on resume. In
        training the sampler yields ``(row, seed)`` (``hjepa.data.row_samplers``), so that state
        fixes which clips, crops and flips come next, with or without workers. The loader's own
        generator (worker base seeds) is seeded here, so iterating a loader never draws from the
        global RNG, whose stream the model's random draws use and the checkpoint restores.
        """
        if train and self.shards is not None:
            return self._streaming_loader(dataset)
        sampler = None
        if train:
            trainer = self.trainer  # None outside a Trainer (one process)
            rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
            sampler = SeededRowSampler(len(dataset), seed=self.seed, weights=self._train_row_weights,
                                       rank=rank, world_size=world)
        workers = self.num_workers
        with warnings.catch_warnings():  # torchdata 0.11 calls a deprecated torch API on every loader
            warnings.filterwarnings("ignore", message="'set_vital' is deprecated")
            return self._stateful_loader(dataset, sampler, train, workers)

    def _stateful_loader(self, dataset: Any, sampler: Any, train: bool, workers: int) -> StatefulDataLoader:
        return StatefulDataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and workers > 0,
            drop_last=self.drop_last if train else False,
            collate_fn=self.collator(),
            worker_init_fn=seed_worker if workers > 0 else None,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _streaming_loader(self, dataset: Any) -> Any:
        """litdata's loader: it splits the shards by rank and worker and has the ``state_dict``
        (epoch, samples yielded per worker) that Lightning checkpoints for an exact resume."""
        from hjepa.data.shards import ShardLoader

        return ShardLoader(
            dataset, batch_size=self.batch_size, num_workers=self.num_workers, pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0, drop_last=self.drop_last,
            collate_fn=self.collator(),
        )

    def train_dataloader(self) -> StatefulDataLoader:
        self.setup("fit")
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> StatefulDataLoader | list:
        self.setup("validate")
        if self.val_dataset is None or len(self.val_dataset) == 0:
            return []
        return self._loader(self.val_dataset, train=False)

    # -- skip accounting --------------------------------------------------------------------
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count the samples dropped in worker processes (the trainer calls this per batch)."""
        self.record_batch(batch)
        return batch

    def record_batch(self, batch: dict[str, Any]) -> None:
        """Add a batch's ``skipped``/``skipped_files`` to the skip report (for loops without a trainer)."""
        if isinstance(batch, dict) and "skipped" in batch:
            self._skipped_samples += int(batch["skipped"])
            for f in batch.get("skipped_files", []):
                self._skipped.setdefault(f, "failed while loading")

    def skip_report(self) -> dict[str, Any]:
        """Bad inputs seen so far: at setup (``check_rows``) and while loading (recorded batches).

        ``skipped_videos``: distinct files skipped; ``skipped_files``: their paths (sorted);
        ``skipped_samples``: samples dropped at load time; ``reasons``: file -> why.
        """
        return {
            "skipped_videos": len(self._skipped),
            "skipped_files": sorted(self._skipped),
            "skipped_samples": self._skipped_samples,
            "reasons": dict(sorted(self._skipped.items())),
        }

    # -- what the model sees ----------------------------------------------------------------
    def input_settings(self) -> InputSettings:
        """The record of the clips this module makes, written into every checkpoint.

        ``source_fps`` is the synthetic world's rate, or the median rate of (up to
        ``FPS_SAMPLE_VIDEOS`` of) the training videos, read from their headers.
        """
        if self._input_settings is None:
            synthetic = dataclasses.asdict(self.synthetic_config) if self.is_synthetic and self._built else None
            self._input_settings = InputSettings(
                resolution=self.resolution,
                frames_per_window=self.sampler.frames_per_window,
                num_windows=self.sampler.num_windows,
                frame_step=self.sampler.frame_step,
                target_fps=self.sampler.target_fps,
                source_fps=synthetic["fps"] if synthetic is not None else self._median_source_fps(),
                short_video=self.sampler.short_video,
                synthetic=synthetic,
            )
        return self._input_settings

    def _median_source_fps(self) -> float | None:
        if self.shards is not None and self.train_dataset is not None:
            rates = [r for r in self.train_dataset.source_fps(FPS_SAMPLE_VIDEOS) if r > 0]
            return float(statistics.median(rates)) if rates else None
        rows = list(getattr(self.train_dataset, "rows", None) or [])[:FPS_SAMPLE_VIDEOS]
        rates = []
        for row in rows:
            try:
                rates.append(float(video_info(row.path, self.reader).fps))
            except (VideoReadError, OSError):
                continue  # counted where it is loaded; the rate comes from the others
        return float(statistics.median(rates)) if rates else None


def _check(key: str, value: Any, ok: bool, why: str) -> None:
    if not ok:
        raise ValueError(f"{key}={value!r}: {why}")


def _as_list(x: str | Sequence[str]) -> list[str]:
    return [x] if isinstance(x, (str, Path)) else list(x)
