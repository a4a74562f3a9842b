"""One small training loop for heads, probes and decoders on features.

AdamW; the learning rate either constant or a warmup-cosine of the optimizer step (a pure
function of the step, :func:`lr_factor`); ``epochs`` passes over the minibatches a callable
hands out; optionally the state that scored best on held-out data (``select``) is kept.
Seeding stays with the caller (the shuffling generator, ``torch.random.fork_rng``), so each
caller keeps its own stream of random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

import torch
from torch import Tensor, nn

from hjepa.train.schedules import warmup_cosine


def lr_factor(step: int, total: int, warmup: int) -> float:
    """lr multiplier at ``step``: linear warmup to 1 (reached at the end of step ``warmup - 1``), then cosine to 0
    at ``total`` (:func:`hjepa.train.schedules.warmup_cosine` counted from step 1 during the warmup)."""
    return warmup_cosine(step + 1 if step < warmup else step, total, warmup, 0.0, 1.0, 0.0)


@dataclass
class FitResult:
    """``steps``: optimizer steps taken; ``best_score``: the kept state's ``select`` score (None without ``select``)."""

    steps: int
    best_score: Optional[float] = None


def fit(
    module: nn.Module,
    params: Iterable[Any],
    batches: Callable[[int], Iterable[Any]],
    loss_fn: Callable[[Any], Optional[Tensor]],
    epochs: int,
    lr: float,
    weight_decay: float = 0.0,
    total_steps: Optional[int] = None,
    warmup_steps: int = 0,
    select: Optional[Callable[[], float]] = None,
    select_every: int = 1,
    on_epoch: Optional[Callable[[int], None]] = None,
) -> FitResult:
    """Train ``module`` with AdamW over ``params`` (tensors or param groups with their own lr / weight decay).

    Args:
        batches: ``batches(epoch)`` -> the epoch's minibatches, in order.
        loss_fn: ``loss_fn(batch)`` -> the loss to minimise, or None to skip the batch (no step).
        total_steps: with it, every group's lr follows ``lr_factor(step, total_steps, warmup_steps)``;
            without it the lr is constant.
        select: score of the current state on held-out data (higher is better), called under
            ``no_grad`` in eval mode after every ``select_every`` epochs and after the last; the best
            state is loaded at the end.
        on_epoch: called after each epoch with its index.
    """
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    base = [g["lr"] for g in optim.param_groups]
    step, best, best_state = 0, -float("inf"), None
    for epoch in range(epochs):
        for batch in batches(epoch):
            module.train()
            if total_steps is not None:
                for group, group_lr in zip(optim.param_groups, base):
                    group["lr"] = group_lr * lr_factor(step, total_steps, warmup_steps)
            loss = loss_fn(batch)
            if loss is None:
                continue
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            step += 1
        if on_epoch is not None:
            on_epoch(epoch)
        if select is not None and ((epoch + 1) % select_every == 0 or epoch + 1 == epochs):
            module.eval()
            with torch.no_grad():
                score = select()
            if score > best:
                best = score
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if best_state is not None:
        module.load_state_dict(best_state)
    return FitResult(step, best if select is not None else None)
