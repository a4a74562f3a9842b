"""hjepa: hierarchical JEPA world models for video.

Stacked JEPA levels over video clips: level 1 encodes pixels with a video ViT, every
level k+1 encodes level k's step tokens at a coarser timescale, and every level predicts
its own future in representation space.

Public names are imported lazily so that ``import hjepa.data`` does not pull in the
models (and nothing here pulls in Lightning)::

    import hjepa
    model = hjepa.HJEPA(hjepa.HJEPAConfig())
    model = hjepa.load_pretrained("runs/default/checkpoints/last.ckpt")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "HJEPA": "hjepa.models.hierarchy",
    "HJEPAConfig": "hjepa.models.config",
    "EncoderConfig": "hjepa.models.config",
    "PredictorConfig": "hjepa.models.config",
    "LevelConfig": "hjepa.models.config",
    "load_pretrained": "hjepa.loading",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hjepa' has no attribute {name!r}")
