"""The process's random-number streams as checkpoint-safe values, and back.

The model draws from the global RNGs while training (latent ``z`` samples, the random subset
of predictions, drop-path), so a run resumed after a kill continues exactly only if the
checkpoint holds the global streams as they were when it was written. Lightning does not save
them. Everything is returned as tensors, ints and lists, so the checkpoint still loads with
``torch.load(weights_only=True)`` (numpy's state holds an ndarray, which that refuses).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng() -> dict[str, Any]:
    """torch (CPU and every initialised CUDA device), numpy and ``random`` states."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set the streams :func:`capture_rng` captured (CUDA only where it is initialised here too)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.set_rng_state_all(state["cuda"])
