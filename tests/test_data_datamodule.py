"""VideoDataModule: batch contract (synthetic and real clips, 0 and 2 workers), ranks, masks, config errors."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from hjepa.data import dataset as dataset_mod
from hjepa.data.manifests import VideoRow, write_csv_manifest
from hjepa.data.row_samplers import SeededRowSampler
from hjepa.data.synthetic import SyntheticConfig
from hjepa.data.transforms import to_model_input
from hjepa.train.datamodule import VideoDataModule

DATA = Path(__file__).parents[1].parent / "shared" / "data"
VIDEOS = DATA / "videos"
CORRUPT = DATA / "corrupt" / "decord_corrupted.mp4"
needs_clips = pytest.mark.skipif(not VIDEOS.is_dir(), reason=f"shared clips not found at {VIDEOS}")
TINY = SyntheticConfig(num_train_videos=12, num_val_videos=4, frames_per_video=48)
# Small real clips: 32 frames, 120 frames, 3 frames (padded), a 25 fps AVI with audio.
REAL = ["part_0.mp4", "carphone_distorted.mp4", "video_0.mov", "test.avi"]


def _check_contract(batch: dict, b: int, t: int, r: int, synthetic: bool) -> None:
    assert batch["clip"].shape == (b, t, r, r, 3) and batch["clip"].dtype == torch.uint8
    assert batch["frame_index"].shape == (b, t) and batch["frame_index"].dtype == torch.long
    assert batch["fps"].shape == (b,) and batch["fps"].dtype == torch.float32
    for key in ("label", "video_index", "clip_index"):
        assert batch[key].shape == (b,) and batch[key].dtype == torch.long
    assert batch["skipped"].shape == () and batch["skipped"].dtype == torch.long
    assert (batch["frame_index"][:, 1:] >= batch["frame_index"][:, :-1]).all()
    if synthetic:
        assert batch["activity"].shape == (b, t) and batch["activity"].dtype == torch.long
        assert batch["positions"].shape == (b, t, TINY.num_objects, 2)
        assert ((batch["positions"] >= 0) & (batch["positions"] < 1)).all()


@pytest.mark.parametrize("workers", [0, 2])
def test_synthetic_batches(workers: int) -> None:
    dm = VideoDataModule(synthetic=TINY, batch_size=4, num_workers=workers)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 3
    for batch in batches:
        _check_contract(batch, 4, 32, 64, synthetic=True)
    assert sorted(torch.cat([b["video_index"] for b in batches]).tolist()) == list(range(12))
    val = list(dm.val_dataloader())
    again = list(dm.val_dataloader())
    assert len(val) == 1 and torch.equal(val[0]["clip"], again[0]["clip"])  # evaluation is deterministic
    x = to_model_input(batches[0]["clip"])
    assert x.shape == (4, 3, 32, 64, 64) and torch.isfinite(x).all()


@needs_clips
@pytest.mark.parametrize("workers", [0, 2])
def test_real_clip_batches(workers: int, tmp_path: Path) -> None:
    write_csv_manifest(tmp_path / "m.csv", [VideoRow(str(VIDEOS / n), i) for i, n in enumerate(REAL)])
    dm = VideoDataModule(
        train_manifests=str(tmp_path / "m.csv"), val_manifests=str(tmp_path / "m.csv"),
        frames_per_window=4, num_windows=2, frame_step=2, resolution=32, batch_size=2,
        num_workers=workers, clips_per_video=2,
    )
    dm.setup("fit")
    train = list(dm.train_dataloader())
    assert len(train) == 2
    for batch in train:
        _check_contract(batch, 2, 8, 32, synthetic=False)
        assert int(batch["skipped"]) == 0
    labels = torch.cat([b["label"] for b in train]).tolist()
    assert sorted(labels) == [0, 1, 2, 3]
    val = list(dm.val_dataloader())
    got = torch.cat([b["video_index"] * 2 + b["clip_index"] for b in val]).tolist()
    assert got == list(range(8))  # every video, both evaluation clips, in order
    fps = {int(v): float(f) for b in val for v, f in zip(b["video_index"], b["fps"])}
    assert fps[0] == pytest.approx(30.0) and fps[3] == pytest.approx(25.0)
    short = [b["frame_index"][i] for b in val for i in range(len(b["label"])) if int(b["label"][i]) == 2]
    assert short[0].tolist() == [0, 2, 2, 2, 2, 2, 2, 2]  # 3-frame video padded with its last frame


def test_two_ranks_get_different_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    dm = VideoDataModule(synthetic=TINY, batch_size=3)
    dm.setup("fit")
    ds = dm.train_dataset
    seen = []
    for rank in (0, 1):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        loader = DataLoader(ds, batch_size=3, sampler=sampler, collate_fn=dm.collator())
        seen.append(torch.cat([b["video_index"] for b in loader]).tolist())
    assert len(seen[0]) == len(seen[1]) == 6 and not set(seen[0]) & set(seen[1])
    # The sampling randomness itself is seeded per rank: the same video gets other clips on rank 1.
    starts = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        ds._gen = None
        starts.append([int(ds[0]["frame_index"][0]) for _ in range(6)])
    assert starts[0] != starts[1]


def test_mask_fn_adds_masks() -> None:
    def mask_fn(b: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return [torch.arange(5).repeat(b, 1)], [torch.arange(5, 8).repeat(b, 1), torch.arange(8, 9).repeat(b, 1)]

    dm = VideoDataModule(synthetic=TINY, batch_size=4, mask_fn=mask_fn)
    batch = next(iter(dm.train_dataloader()))
    assert [m.shape for m in batch["masks_enc"]] == [(4, 5)]
    assert [m.shape for m in batch["masks_pred"]] == [(4, 3), (4, 1)]


def test_weighted_manifest_mixing(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    write_csv_manifest(a, [VideoRow(str(VIDEOS / "part_0.mp4"))])
    write_csv_manifest(b, [VideoRow(str(VIDEOS / n)) for n in ("carphone_distorted.mp4", "test.avi", "video_0.mov")])
    if not VIDEOS.is_dir():
        pytest.skip(f"shared clips not found at {VIDEOS}")
    dm = VideoDataModule(train_manifests=[str(a), str(b)], train_weights=[3.0, 1.0], probe=False)
    dm.setup("fit")
    sampler = dm.train_dataloader().sampler
    assert isinstance(sampler, SeededRowSampler)
    w = sampler.weights / sampler.weights.sum()
    assert w[0] == pytest.approx(0.75) and w[1:].sum() == pytest.approx(0.25)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"frame_step": 2, "target_fps": 8.0}, "frame_step=2 and target_fps=8.0"),
        ({"reader": "opencv"}, "reader='opencv'"),
        ({"short_video": "loop"}, "short_video='loop'"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"crop_scale": (0.5, 0.2)}, "crop_scale"),
        ({"train_manifests": "a.csv", "synthetic": SyntheticConfig()}, "not both"),
        ({"val_manifests": "v.csv"}, "val_manifests is set"),
    ],
)
def test_bad_config_values_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        VideoDataModule(**kwargs)


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        if batch["clip"].shape[0] == 0:
            return None
        return (to_model_input(batch["clip"]).mean() - self.w).pow(2).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@needs_clips
def test_trainer_counts_skips_from_worker_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setattr(dataset_mod, "_warned", set())
    rows = [VideoRow(str(VIDEOS / "part_0.mp4")), VideoRow(str(CORRUPT)), VideoRow(str(tmp_path / "gone.mp4"))]
    write_csv_manifest(tmp_path / "m.csv", rows, relative=False)
    # 50 frames: every clip of the corrupt file crosses its damaged packet, found in a worker.
    dm = VideoDataModule(
        train_manifests=str(tmp_path / "m.csv"), frames_per_window=25, num_windows=2,
        resolution=32, batch_size=2, num_workers=2, drop_last=False,
    )
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    with caplog.at_level(logging.WARNING):
        trainer.fit(_Tiny(), datamodule=dm)
    report = dm.skip_report()
    assert report["skipped_files"] == sorted([str(CORRUPT), str(tmp_path / "gone.mp4")])
    assert report["skipped_videos"] == 2 and report["skipped_samples"] == 2  # corrupt, once per epoch
