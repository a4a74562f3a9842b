"""Video data: readers, manifests, clip sampling, transforms, the synthetic dataset, datasets.

Nothing here imports Lightning; the DataModule lives in ``hjepa.train.datamodule``.
"""

from .dataset import (
    ClipCollator,
    FailedSample,
    SyntheticClipDataset,
    VideoClipDataset,
    check_rows,
    seed_worker,
)
from .manifests import (
    ManifestError,
    VideoRow,
    mix_manifests,
    read_csv_manifest,
    read_manifest,
    read_space_manifest,
    scan_folder,
    write_csv_manifest,
)
from .readers import (
    READERS,
    DecordReader,
    PyAVReader,
    VideoInfo,
    VideoReadError,
    decord_available,
    open_video,
    resolve_reader,
    video_info,
)
from .sampling import ClipSampler, ShortVideo
from .synthetic import (
    EPIC_COLUMNS,
    NOUNS,
    VERBS,
    SyntheticConfig,
    SyntheticVideo,
    SyntheticVideos,
    write_synthetic_dataset,
)
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalClipTransform,
    FrameTooSmall,
    TrainClipTransform,
    check_frame_size,
    to_model_input,
)

__all__ = [
    "ClipCollator",
    "ClipSampler",
    "DecordReader",
    "EPIC_COLUMNS",
    "EvalClipTransform",
    "FailedSample",
    "FrameTooSmall",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ManifestError",
    "NOUNS",
    "PyAVReader",
    "READERS",
    "ShortVideo",
    "SyntheticClipDataset",
    "SyntheticConfig",
    "SyntheticVideo",
    "SyntheticVideos",
    "TrainClipTransform",
    "VERBS",
    "VideoClipDataset",
    "VideoInfo",
    "VideoReadError",
    "VideoRow",
    "check_frame_size",
    "decord_available",
    "mix_manifests",
    "open_video",
    "check_rows",
    "read_csv_manifest",
    "read_manifest",
    "read_space_manifest",
    "resolve_reader",
    "scan_folder",
    "seed_worker",
    "to_model_input",
    "video_info",
    "write_csv_manifest",
    "write_synthetic_dataset",
]
