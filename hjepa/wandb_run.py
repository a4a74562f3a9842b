"""The Weights & Biases run a job may log to: the active one, if a caller started it.

Evaluation, visualisation and anticipation log their figures to a run that is already open
(``hjepa pretrain``'s, or a user's notebook), and never start one themselves, so they never
touch the network on their own.
"""

from __future__ import annotations

from typing import Any


def active_run() -> tuple[Any, Any] | None:
    """``(wandb, wandb.run)`` when wandb is installed and a run is open, else None."""
    try:
        import wandb
    except ImportError:
        return None
    run = getattr(wandb, "run", None)
    return (wandb, run) if run is not None else None
