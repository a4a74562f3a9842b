"""Action anticipation on top of a pretrained H-JEPA (the EPIC-KITCHENS-100 protocol).

The entry point is :func:`run_anticipation` (``hjepa anticipate``): typed keyword arguments,
every one with a default, nested sections ``data`` / ``window`` / ``head`` / ``optim``.

Modules: ``annotations`` (EPIC / RULSTM / generic CSVs, video fps, action vocabulary),
``windows`` (where the observed clip lies), ``clips`` (decoding), ``config`` (the typed
settings), ``data`` (annotations, vocabulary and videos of a run), ``features`` (context and
predicted tokens per level, extracted once and cached), ``head`` (the anticipation head,
losses), ``heads`` (the ablation's heads, their training on cached features, their checkpoint),
``finetune`` (the backbone trained under the main head), ``metrics`` (class-mean top-5 recall),
``protocol`` (every segment scored; unseen-participant and tail-class subsets), ``predictions``
(the challenge JSON), ``report`` (evaluation and artefacts) and ``run`` (composes them).
"""

from hjepa.anticipation.annotations import (
    ActionVocab,
    AnnotationError,
    Segment,
    VideoTiming,
    build_vocab,
    keep_known,
    read_annotations,
    read_class_names,
    read_video_info,
)
from hjepa.anticipation.config import (
    AnticipationConfig,
    AnticipationOptimConfig,
    DataConfig,
    HeadConfig,
    WindowConfig,
    load_config,
)
from hjepa.anticipation.features import FeatureSet
from hjepa.anticipation.head import AnticipationHead, head_loss, sigmoid_focal_loss
from hjepa.anticipation.metrics import anticipation_metrics, class_mean_topk_recall, topk_accuracy
from hjepa.anticipation.predictions import build_challenge_json, validate_challenge_json, write_challenge_json
from hjepa.anticipation.head_training import HeadSpec, ablation_specs
from hjepa.anticipation.run import load_head, run_anticipation
from hjepa.anticipation.windows import ObservationWindow, anticipation_steps, observation_window, plan_windows

__all__ = [
    "ActionVocab",
    "AnticipationConfig",
    "DataConfig",
    "HeadConfig",
    "AnticipationOptimConfig",
    "WindowConfig",
    "load_config",
    "load_head",
    "run_anticipation",
    "AnnotationError",
    "AnticipationHead",
    "FeatureSet",
    "HeadSpec",
    "ObservationWindow",
    "Segment",
    "VideoTiming",
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
