"""The training data stream resumes exactly from a loader's ``state_dict`` (torchdata's StatefulDataLoader)."""

from __future__ import annotations

import pytest
import torch

from hjepa.data.row_samplers import SeededRowSampler
from hjepa.data.synthetic import SyntheticConfig
from hjepa.train.datamodule import VideoDataModule

TINY = SyntheticConfig(num_train_videos=6, num_val_videos=2, frames_per_video=24, resolution=16)


def _datamodule(workers: int) -> VideoDataModule:
    return VideoDataModule(synthetic=TINY, resolution=16, frames_per_window=4, num_windows=2, batch_size=2,
                           num_workers=workers, seed=3)


def _key(batch: dict) -> list:
    """What identifies a batch: which videos, which frames, and the pixels (crop and noise)."""
    return [batch["video_index"].tolist(), batch["frame_index"].tolist(), int(batch["clip"].long().sum())]


def _stream(dm: VideoDataModule, epochs: int, stop_after: int | None = None) -> tuple[list, dict | None]:
    loader = dm.train_dataloader()
    out: list = []
    for _ in range(epochs):
        for batch in loader:
            out.append(_key(batch))
            if len(out) == stop_after:
                return out, loader.state_dict()
    return out, None


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("stop_after", [2, 3, 5])  # mid-epoch 1, at its end, mid-epoch 2 (3 batches an epoch)
def test_a_restored_loader_continues_with_the_same_clips(workers: int, stop_after: int) -> None:
    full, _ = _stream(_datamodule(workers), epochs=2)
    head, state = _stream(_datamodule(workers), epochs=2, stop_after=stop_after)
    assert state is not None
    loader = _datamodule(workers).train_dataloader()  # a new process would build it afresh
    loader.load_state_dict(state)
    tail = []
    while len(head) + len(tail) < len(full):
        tail.extend(_key(b) for b in loader)
    assert head + tail == full


def test_the_stream_does_not_depend_on_the_number_of_workers() -> None:
    assert _stream(_datamodule(0), epochs=2)[0] == _stream(_datamodule(2), epochs=2)[0]


def test_epochs_differ_and_the_global_rng_is_not_consumed() -> None:
    torch.manual_seed(5)
    before = torch.get_rng_state()
    stream, _ = _stream(_datamodule(0), epochs=2)
    assert torch.equal(torch.get_rng_state(), before)
    assert stream[:3] != stream[3:]


def test_weighted_rows_resume_too() -> None:
    def make() -> SeededRowSampler:
        return SeededRowSampler(4, seed=1, weights=[3.0, 1.0, 0.0, 0.0], num_samples=50)

    reference = make()
    epochs = [list(reference) for _ in range(3)]
    assert epochs[0] != epochs[1]
    rows = [r for r, _ in epochs[0]]
    assert set(rows) <= {0, 1} and rows.count(0) > 25
    killed = make()
    list(killed)  # epoch 1
    epoch = iter(killed)
    head = [next(epoch) for _ in range(20)]
    state = epoch.state_dict()
    resumed = make()
    epoch = iter(resumed)
    epoch.load_state_dict(state)
    assert head + list(epoch) == epochs[1]
    assert list(resumed) == epochs[2]


@pytest.mark.parametrize("kwargs, message", [
    ({"num_rows": 0}, "no rows"),
    ({"num_rows": 3, "weights": [1.0, 1.0]}, "2 weights for 3 rows"),
    ({"num_rows": 2, "weights": [-1.0, 2.0]}, ">= 0"),
    ({"num_rows": 2, "num_samples": 5}, "num_samples=5"),
])
def test_bad_sampler_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SeededRowSampler(**kwargs)


def test_ranks_share_one_epoch_and_each_resumes_its_own_part() -> None:
    """Under DDP every rank draws the same epoch and keeps a disjoint share of it."""
    ranks = [SeededRowSampler(10, seed=3, rank=r, world_size=3) for r in range(3)]
    epochs = [list(s) for s in ranks]
    assert [len(e) for e in epochs] == [3, 3, 3]
    rows = [row for e in epochs for row, _ in e]
    assert len(set(rows)) == 9  # disjoint: 9 of the 10 rows, the tenth left out this epoch
    assert [r for r, _ in list(SeededRowSampler(10, seed=3))[1::3][:3]] == [r for r, _ in epochs[1]]
    it = iter(SeededRowSampler(10, seed=3, rank=2, world_size=3))
    next(it)
    state = it.state_dict()
    fresh = iter(SeededRowSampler(10, seed=3, rank=2, world_size=3))
    fresh.load_state_dict(state)
    assert list(fresh) == epochs[2][1:]
    with pytest.raises(ValueError, match="rank=3"):
        SeededRowSampler(10, rank=3, world_size=3)
