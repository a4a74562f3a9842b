"""Evaluation of a trained H-JEPA: prediction error by level and horizon against baselines,
retrieval of the true future, collapse statistics and probes on frozen representations.

``run_evaluate`` is what ``hjepa evaluate`` calls; the metric and probe functions take plain
tensors and can be used on any model's features.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "normalize_targets": "hjepa.eval.metrics",
    "l1_error": "hjepa.eval.metrics",
    "cosine_similarity": "hjepa.eval.metrics",
    "score_predictions": "hjepa.eval.metrics",
    "PredictionScores": "hjepa.eval.metrics",
    "retrieval_ranks": "hjepa.eval.metrics",
    "retrieval_scores": "hjepa.eval.metrics",
    "RetrievalScores": "hjepa.eval.metrics",
    "collapse_stats": "hjepa.eval.metrics",
    "CollapseStats": "hjepa.eval.metrics",
    "effective_rank": "hjepa.eval.metrics",
    "LinearProbe": "hjepa.eval.probes",
    "AttentiveProbe": "hjepa.eval.probes",
    "ProbeResult": "hjepa.eval.probes",
    "train_probe": "hjepa.eval.probes",
    "split_by_group": "hjepa.eval.probes",
    "r2_score": "hjepa.eval.probes",
    "run_evaluate": "hjepa.eval.evaluate",
    "format_evaluation": "hjepa.eval.evaluate",
    "score_model": "hjepa.eval.scoring",
    "rollout": "hjepa.models.rollout",
    "length_errors": "hjepa.eval.long_clips",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hjepa.eval' has no attribute {name!r}")
