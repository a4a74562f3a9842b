"""Training schedules as pure functions of the optimizer step.

Learning rate, weight decay and EMA momentum are computed from ``global_step`` alone, so a
resumed run continues exactly where it stopped without replaying anything.
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, start: float, peak: float, final: float) -> float:
    """Linear warm-up from ``start`` to ``peak`` over ``warmup_steps``, then cosine to ``final``."""
    if warmup_steps > 0 and step < warmup_steps:
        return start + (peak - start) * step / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return final + 0.5 * (peak - final) * (1.0 + math.cos(math.pi * progress))


def linear_ramp(step: int, total_steps: int, start: float, end: float) -> float:
    """``start`` at step 0, ``end`` at ``total_steps`` and after."""
    progress = min(max(step, 0) / max(total_steps, 1), 1.0)
    return start + (end - start) * progress


def ema_momentum(step: int, total_steps: int, start: float = 0.998, end: float = 1.0) -> float:
    """EMA momentum of the target encoders: a linear ramp from ``start`` to ``end`` (V-JEPA)."""
    return linear_ramp(step, total_steps, start, end)
