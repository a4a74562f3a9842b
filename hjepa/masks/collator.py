"""Collators that add multi-block masks to a batch.

* :class:`MaskCollator` returns ``(batch, masks_enc, masks_pred)`` like V-JEPA's collator.
* :class:`DictMaskCollator` adds ``"masks_enc"`` / ``"masks_pred"`` to a dict batch.

``masks_enc`` / ``masks_pred`` are lists with one long ``[B, K_i]`` tensor per block spec.

Worker seeding: each DataLoader worker holds a copy of the collator, so a plain seeded generator
would hand every worker (and every epoch, when workers restart) the same masks. In a worker the
generator is therefore re-seeded from ``(seed, worker seed)``; PyTorch draws the worker seed
from the main process's RNG every epoch, so masks differ across workers and epochs and are
reproducible under a global seed. Without workers the generator simply continues.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from torch import Tensor
from torch.utils.data import default_collate, get_worker_info

from hjepa.masks.multiblock import DEFAULT_MASK_SPECS, BlockMaskSpec, Grid, MultiBlockMasks


def _batch_size(batch: Any, fallback: int) -> int:
    if isinstance(batch, Tensor):
        return batch.shape[0]
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        return batch[0].shape[0]
    return fallback


class MaskCollator:
    """Collate samples with ``collate_fn`` and draw masks for the batch.

    Args:
        grid: (Tg, Hg, Wg) token grid of the encoder input.
        specs: block specs (default V-JEPA short + long range).
        seed: mask seed.
        collate_fn: base collate (default ``torch.utils.data.default_collate``).
    """

    def __init__(
        self,
        grid: Grid,
        specs: Sequence[BlockMaskSpec] = DEFAULT_MASK_SPECS,
        seed: int = 0,
        collate_fn: Callable[[list], Any] = default_collate,
    ) -> None:
        self.masks = MultiBlockMasks(grid, tuple(specs), seed)
        self.collate_fn = collate_fn
        self._worker_seed: int | None = None

    @classmethod
    def for_input(
        cls, frames: int, height: int, width: int, patch_size: int = 16, tubelet_size: int = 2, **kwargs
    ) -> "MaskCollator":
        gen = MultiBlockMasks.for_input(frames, height, width, patch_size, tubelet_size)
        return cls(gen.grid, **kwargs)

    def _sync_worker_seed(self) -> None:
        info = get_worker_info()
        if info is not None and info.seed != self._worker_seed:
            self._worker_seed = info.seed
            self.masks.reseed((self.masks.seed * 1_000_003 + info.seed) % (2**63))

    def draw(self, batch_size: int) -> tuple[list[Tensor], list[Tensor]]:
        """(masks_enc, masks_pred) for a batch of ``batch_size``."""
        self._sync_worker_seed()
        return self.masks(batch_size)

    def __call__(self, samples: list) -> tuple[Any, list[Tensor], list[Tensor]]:
        batch = self.collate_fn(samples)
        masks_enc, masks_pred = self.draw(_batch_size(batch, len(samples)))
        return batch, masks_enc, masks_pred


class DictMaskCollator(MaskCollator):
    """Like :class:`MaskCollator` for dict batches: adds ``masks_enc`` and ``masks_pred`` keys.

    The batch size is read from ``batch[batch_key]`` (default ``"clip"``), so a base collate
    that drops unreadable samples still gets masks of the right size.
    """

    def __init__(self, *args, batch_key: str = "clip", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batch_key = batch_key

    def __call__(self, samples: list) -> dict[str, Any]:  # type: ignore[override]
        batch = self.collate_fn(samples)
        if not isinstance(batch, dict):
            raise TypeError(f"DictMaskCollator needs a dict batch from its collate_fn, got {type(batch).__name__}")
        if self.batch_key not in batch:
            raise KeyError(f"batch has no {self.batch_key!r} entry to size the masks by; keys: {sorted(batch)}")
        masks_enc, masks_pred = self.draw(int(batch[self.batch_key].shape[0]))
        batch["masks_enc"] = masks_enc
        batch["masks_pred"] = masks_pred
        return batch
