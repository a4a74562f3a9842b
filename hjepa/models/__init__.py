"""Pure ``nn.Module`` models: video ViT (level 1), temporal encoders (levels >= 2),
predictors, JEPA levels and the hierarchy. Nothing here imports Lightning or data code."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "VideoViT": "hjepa.models.vit",
    "build_encoder": "hjepa.models.vit",
    "ENCODERS": "hjepa.models.vit",
    "FuturePredictor": "hjepa.models.predictor",
    "MaskedPredictor": "hjepa.models.predictor",
    "TemporalEncoder": "hjepa.models.temporal",
    "WindowEncoder": "hjepa.models.window",
    "JEPALevel": "hjepa.models.level",
    "HJEPA": "hjepa.models.hierarchy",
    "HJEPAConfig": "hjepa.models.config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hjepa.models' has no attribute {name!r}")
