"""Action anticipation on top of a pretrained H-JEPA: annotations, windows, features, heads, metrics.

The entry point is :func:`hjepa.anticipation.run.run_anticipation` (``hjepa anticipate``).
"""

from hjepa.anticipation.annotations import (
    ActionVocab,
    AnnotationError,
    Segment,
    VideoInfo,
    build_vocab,
    keep_known,
    read_annotations,
    read_class_names,
    read_video_info,
)
from hjepa.anticipation.head import AttentiveProbe, head_loss, sigmoid_focal_loss
from hjepa.anticipation.metrics import anticipation_metrics, class_mean_topk_recall, topk_accuracy
from hjepa.anticipation.predictions import build_challenge_json, validate_challenge_json, write_challenge_json
from hjepa.anticipation.probe import FeatureSet, HeadSpec, ablation_specs
from hjepa.anticipation.windows import ObservationWindow, anticipation_steps, observation_window, plan_windows

__all__ = [
    "ActionVocab",
    "AnnotationError",
    "AttentiveProbe",
    "FeatureSet",
    "HeadSpec",
    "ObservationWindow",
    "Segment",
    "VideoInfo",
    "ablation_specs",
    "anticipation_metrics",
    "anticipation_steps",
    "build_challenge_json",
    "build_vocab",
    "class_mean_topk_recall",
    "head_loss",
    "keep_known",
    "observation_window",
    "plan_windows",
    "read_annotations",
    "read_class_names",
    "read_video_info",
    "sigmoid_focal_loss",
    "topk_accuracy",
    "validate_challenge_json",
    "write_challenge_json",
]
