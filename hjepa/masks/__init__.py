"""Multi-block 3-D masks (V-JEPA) and ``apply_masks``."""

from hjepa.masks.multiblock import (
    DEFAULT_MASK_SPECS,
    LONG_RANGE,
    SHORT_RANGE,
    BlockMaskSpec,
    MultiBlockMasks,
    sample_block_size,
    sample_multiblock,
)
from hjepa.masks.utils import apply_masks

__all__ = [
    "BlockMaskSpec",
    "DEFAULT_MASK_SPECS",
    "LONG_RANGE",
    "MultiBlockMasks",
    "SHORT_RANGE",
    "apply_masks",
    "sample_block_size",
    "sample_multiblock",
]
