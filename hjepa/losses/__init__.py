"""Losses and collapse statistics for JEPA levels."""

from hjepa.losses.jepa import normalize_target, regression_loss
from hjepa.losses.stats import copy_ratio, effective_rank, feature_std
from hjepa.losses.vicreg import covariance_loss, variance_loss

__all__ = [
    "normalize_target",
    "regression_loss",
    "effective_rank",
    "feature_std",
    "copy_ratio",
    "variance_loss",
    "covariance_loss",
]
