"""The training sampler: which rows an epoch visits, and every sample's random seed.

For a run resumed after a kill to train on exactly the clips the uninterrupted run would
have, all randomness of the data must be in state that the checkpoint holds. A per-worker
generator is not: it is seeded from the loader's per-epoch base seed and advances with
whatever that worker happened to load. So :class:`SeededRowSampler` draws, from its own
generator, each epoch's row order (a permutation, or weighted draws with replacement for
mixed manifests) *and* one seed per sample; it yields ``(row, seed)`` and the dataset draws
the clip start, crop and flip of that sample from a generator seeded with it. The data stream
is then a function of the sampler's state alone (not of the number of workers), and that
state is two numbers: the generator state at the start of the epoch and how many samples
were handed out. ``torchdata``'s ``StatefulDataLoader`` saves it (``state_dict``) with every
checkpoint and, on resume, the sampler redraws the same epoch and skips what was used.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DistributedSampler

SEED_BITS = 62  # per-sample seeds are drawn in [0, 2**62): plain Python ints, any generator takes them


class _Epoch(Iterator[tuple[int, int]]):
    """One epoch of ``(row, seed)`` draws; its ``state_dict`` resumes it exactly.

    The draws are made at the first ``next()``, not when the iterator is created: a
    DataLoader with workers creates (and drops) one sampler iterator more than it uses, which
    must not consume an epoch of the generator.
    """

    def __init__(self, sampler: "SeededRowSampler") -> None:
        self.sampler = sampler
        self.start_state: torch.Tensor | None = None
        self.items: list[tuple[int, int]] | None = None
        self.yielded = 0

    def _draw(self) -> list[tuple[int, int]]:
        if self.items is None:
            s, g = self.sampler, self.sampler.generator
            self.start_state = g.get_state()
            if s.weights is None:
                rows = torch.randperm(s.num_rows, generator=g)[: s.num_samples]
            else:
                rows = torch.multinomial(s.weights, s.num_samples, replacement=True, generator=g)
            seeds = torch.randint(0, 2**SEED_BITS, (s.num_samples,), generator=g)
            # Every rank draws the same epoch from the same generator and keeps its own share,
            # so the split is a function of the saved state too.
            items = list(zip(rows.tolist(), seeds.tolist()))
            self.items = items[s.rank :: s.world_size][: len(s)]
        return self.items

    def __iter__(self) -> "_Epoch":
        return self

    def __next__(self) -> tuple[int, int]:
        items = self._draw()
        if self.yielded >= len(items):
            raise StopIteration
        item = items[self.yielded]
        self.yielded += 1
        return item

    def state_dict(self) -> dict[str, Any]:
        start = self.sampler.generator.get_state() if self.start_state is None else self.start_state
        return {"generator": start, "yielded": self.yielded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The same epoch again, from the same generator state, less what was used.
        self.sampler.generator.set_state(state["generator"])
        self.items = None
        self._draw()
        self.yielded = int(state["yielded"])


class SeededRowSampler(DistributedSampler):
    """Yields ``(row, seed)`` for ``num_samples`` rows an epoch (see module docstring).

    Under DDP every rank draws the same epoch and takes every ``world_size``-th draw from
    ``rank`` on (``num_samples // world_size`` each; the remainder, a different few rows every
    epoch, is left out). It is a ``DistributedSampler`` so that Lightning, which would otherwise
    wrap it in a sampler of its own whose position no checkpoint holds, uses it as it is; it
    shares nothing else with torch's (``set_epoch`` is not needed: the generator moves on).

    Args:
        num_rows: rows of the dataset.
        seed: seed of the sampler's own generator (the global RNG is never consumed).
        weights: optional non-negative weight per row (positive sum): rows are then drawn with
            replacement in proportion to them; None: a fresh permutation every epoch.
        num_samples: samples per epoch over all ranks (default ``num_rows``; at most
            ``num_rows`` without weights).
        rank, world_size: this process's rank and the number of processes.
    """

    def __init__(
        self, num_rows: int, seed: int = 0, weights: Sequence[float] | None = None, num_samples: int | None = None,
        rank: int = 0, world_size: int = 1,
    ) -> None:  # DistributedSampler.__init__ is not called: it wants a dataset and a process group
        if num_rows < 1:
            raise ValueError(f"num_rows={num_rows}: the dataset has no rows to sample")
        self.num_rows = int(num_rows)
        self.num_samples = self.num_rows if num_samples is None else int(num_samples)
        self.weights: torch.Tensor | None = None
        if weights is not None:
            w = torch.as_tensor(list(weights), dtype=torch.double)
            if w.shape != (self.num_rows,):
                raise ValueError(f"{len(w)} weights for {self.num_rows} rows")
            if (w < 0).any() or not w.sum() > 0:
                raise ValueError("row weights must be >= 0 with a positive sum")
            self.weights = w
        elif not 1 <= self.num_samples <= self.num_rows:
            raise ValueError(f"num_samples={self.num_samples}: need 1..{self.num_rows} without weights")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} is not in 0..{world_size - 1}")
        if self.num_samples < world_size:
            raise ValueError(f"{self.num_samples} samples an epoch cannot be split over {world_size} processes")
        self.rank, self.world_size = int(rank), int(world_size)
        self.generator = torch.Generator().manual_seed(int(seed))

    def __iter__(self) -> _Epoch:
        return _Epoch(self)

    def __len__(self) -> int:
        """Samples this rank yields an epoch."""
        return self.num_samples // self.world_size

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do: each epoch continues the generator (Lightning calls this every epoch)."""
