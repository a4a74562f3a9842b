"""Checkpoint files that a kill cannot corrupt and that never run code when read.

Writing: Lightning writes a checkpoint straight to its final path, so a run killed mid-write
can leave a truncated ``last.ckpt``. Here every file is written to a temporary sibling, flushed
to disk, and then renamed over the target: a rename within one folder is atomic, so the old
file stays whole until the new one is complete.

Reading: a checkpoint is a pickle, and unpickling can call any importable function (a
tampered ``last.ckpt`` could delete files on resume). Resume therefore reads with
``torch.load(weights_only=True)``, which accepts tensors and plain Python values only and
refuses anything else *before* calling it; hjepa writes nothing else into its checkpoints.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from hjepa.errors import UserError


class UnsafeCheckpoint(UserError, pickle.UnpicklingError):
    """A checkpoint holds pickled objects that are not tensors or plain values."""


class NotAPretrainCheckpoint(UserError, ValueError):
    """A file that loads safely but was not written by ``hjepa pretrain``."""


# What a pretraining checkpoint has (Lightning's own entries and hjepa's model config).
RESUME_KEYS = ("pytorch-lightning_version", "state_dict", "hjepa")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def safe_torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a file that needs more is refused as :class:`UnsafeCheckpoint`."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message names the refused global ("Unsupported global: GLOBAL os.system ...").
        detail = next((ln.strip() for ln in str(err).splitlines() if "GLOBAL" in ln or "Unsupported" in ln), "")
        raise UnsafeCheckpoint(
            f"{path}: refused to load: it holds pickled objects other than tensors and plain values"
            f"{' (' + detail[:200] + ')' if detail else ''}, which could run code when read. "
            "hjepa never writes such objects; if this file is yours, resume from a checkpoint written by "
            "'hjepa pretrain', or delete it and start the run again"
        ) from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic and whose loads never unpickle code (module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(
        self,
        path: str | os.PathLike,
        map_location: Optional[Callable] = lambda storage, loc: storage,
        weights_only: Optional[bool] = None,
    ) -> dict[str, Any]:
        if weights_only is False:
            raise ValueError("hjepa loads checkpoints with weights_only=True only (a pickle can run code)")
        if not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        checkpoint = safe_torch_load(path, map_location)
        missing = [k for k in RESUME_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
        if missing:
            raise NotAPretrainCheckpoint(
                f"{path} is not a checkpoint written by 'hjepa pretrain' (it has no {', '.join(map(repr, missing))}); "
                "resume from <run_dir>/checkpoints/last.ckpt of a pretraining run"
            )
        return checkpoint
