"""Losses and collapse statistics for JEPA levels."""

from hjepa.losses.jepa import normalize_target, regression_loss
from hjepa.losses.stats import RunningRows, baseline_skill, copy_ratio, effective_rank, feature_std, slot_means
from hjepa.losses.vicreg import covariance_loss, gather_across_ranks, variance_loss

__all__ = [
    "normalize_target",
    "regression_loss",
    "effective_rank",
    "feature_std",
    "copy_ratio",
    "baseline_skill",
    "slot_means",
    "RunningRows",
    "variance_loss",
    "gather_across_ranks",
    "covariance_loss",
]
