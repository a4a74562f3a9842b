"""The training step ``hjepa pretrain`` runs, driven through ``HJEPAModule``'s own methods.

One call of :class:`HJEPATrainStep` is one optimizer step of Lightning's automatic optimisation,
in its order: ``HJEPAModule.training_step`` (uint8 clip -> model input, every level's losses,
the logged statistics) under the precision's autocast; ``optimizer.zero_grad()``; ``backward``;
gradient-norm clipping at the trainer's ``gradient_clip_val``; then
``HJEPAModule.optimizer_step``, which applies the lr / weight-decay schedules, steps AdamW (built
by ``HJEPAModule.configure_optimizers``) and updates every EMA target. Only the Trainer's own
bookkeeping is left out (``self.log`` returns at once without a Trainer); the pipeline benchmark
(``hjepa.bench.pipeline``) times the step inside the real Trainer.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch

from hjepa.models.config import HJEPAConfig
from hjepa.train.module import HJEPAModule, OptimConfig

# Lightning's bf16-mixed precision is this autocast around the training step's forward.
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def random_batch(batch: int, frames: int, size: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """A decoded batch as the DataModule hands it over: ``{"clip": uint8 [B, T, H, W, 3]}``."""
    g = torch.Generator().manual_seed(seed)
    clip = torch.randint(0, 256, (batch, frames, size, size, 3), dtype=torch.uint8, generator=g)
    return {"clip": clip.to(device)}


class HJEPATrainStep:
    """``hjepa pretrain``'s optimizer step on a fixed batch.

    Args:
        arch, optim: the module's configuration (as ``--model.arch`` / ``--model.optim``).
        gradient_clip_val: the trainer's ``gradient_clip_val`` (norm clipping; None or 0: off).
        device: where the module lives.
        precision: ``fp32`` or ``bf16`` (autocast, as the Trainer's ``bf16-mixed``).
        compile: ``torch.compile`` the model in place (``nn.Module.compile``: parameter names,
            and so the optimizer's groups, stay those of the eager model).
    """

    def __init__(self, arch: HJEPAConfig, optim: OptimConfig, gradient_clip_val: float | None,
                 device: torch.device, precision: str = "fp32", compile: bool = False) -> None:
        self.module = HJEPAModule(arch, optim).to(device).train()
        if compile:
            self.module.model.compile()
        self.optimizer = self.module.configure_optimizers()
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.gradient_clip_val = gradient_clip_val
        self.device = device
        self.dtype = AUTOCAST_DTYPES[precision]
        self.batch_idx = 0

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """The forward half: ``HJEPAModule.training_step`` -> scalar loss (graph kept)."""
        with warnings.catch_warnings(), self._autocast():
            # Without a Trainer, self.log warns and returns: the logging itself is not timed here.
            warnings.filterwarnings("ignore", message=".*self.log.*")
            return self.module.training_step(batch, self.batch_idx)

    def __call__(self, batch: dict[str, Any]) -> float:
        """One optimizer step on ``batch`` (``{"clip": uint8 [B, T, H, W, 3]}``); returns the loss."""
        losses: list[torch.Tensor] = []

        def closure() -> torch.Tensor:
            loss = self.loss(batch)
            self.optimizer.zero_grad(set_to_none=True)  # where Lightning's closure zeroes them
            loss.backward()
            if self.gradient_clip_val:
                torch.nn.utils.clip_grad_norm_(self.params, self.gradient_clip_val)
            losses.append(loss.detach())
            return loss

        self.module.optimizer_step(0, self.batch_idx, self.optimizer, closure)
        self.batch_idx += 1
        return float(losses[-1])
