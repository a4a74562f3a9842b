"""Pictures of what each level predicts: PCA colour maps of features, timelines, nearest-frame
thumbnails, error-vs-horizon curves, GIFs, and an optional feature-to-pixel decoder.

``run_visualize`` is what ``hjepa visualize`` calls. Figures are built without pyplot
(Agg canvas), so they render headless.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "PCAProjector": "hjepa.viz.pca",
    "fit_pca": "hjepa.viz.pca",
    "pca_rgb_pair": "hjepa.viz.pca",
    "ImageRow": "hjepa.viz.figures",
    "StripRow": "hjepa.viz.figures",
    "timeline_figure": "hjepa.viz.figures",
    "Neighbour": "hjepa.viz.figures",
    "NearestRow": "hjepa.viz.figures",
    "nearest_frames_figure": "hjepa.viz.figures",
    "Curve": "hjepa.viz.figures",
    "Panel": "hjepa.viz.figures",
    "horizon_curves_figure": "hjepa.viz.figures",
    "save_figure": "hjepa.viz.figures",
    "level_color": "hjepa.viz.figures",
    "compose_panels": "hjepa.viz.gif",
    "write_gif": "hjepa.viz.gif",
    "FeatureDecoder": "hjepa.viz.decoder",
    "train_decoder": "hjepa.viz.decoder",
    "run_visualize": "hjepa.viz.visualize",
    "visualize_clip": "hjepa.viz.visualize",
    "level1_colour_maps": "hjepa.viz.visualize",
    "VideoClip": "hjepa.viz.clips",
    "load_clip": "hjepa.viz.clips",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hjepa.viz' has no attribute {name!r}")
