"""Lightning glue for pretraining: the thin module around the pure ``HJEPA`` model.

It owns the optimizer (AdamW with parameter groups: no weight decay on norms, biases,
position / query / mask tokens), the schedules (learning-rate warm-up + cosine,
weight-decay ramp, EMA-momentum ramp: pure functions of ``global_step``), the EMA update
after every optimizer step, and logging namespaced per level (``train/level1/loss``,
``train/level1/eff_rank``, ``train/level1/copy_ratio``, ``train/lr``, ``train/ema_momentum``).
The model's config is stored in every checkpoint (``checkpoint["hjepa"]``) so the model can
be rebuilt from the file alone (``hjepa.load_pretrained``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, Optional

import lightning as L
import torch

from hjepa.data.transforms import to_model_input
from hjepa.errors import UserError
from hjepa.input_settings import RECORD_KEY, InputSettings
from hjepa.models.config import HJEPAConfig
from hjepa.loading import build_model, init_adding_actions
from hjepa.train.provenance import provenance
from hjepa.train.rng_state import capture_rng, restore_rng
from hjepa.train.schedules import ema_momentum, linear_ramp, warmup_cosine

log = logging.getLogger(__name__)

VALIDATION_SEED = 0  # every validation pass draws its random samples from this seed


class CheckpointMismatch(UserError, ValueError):
    """The checkpoint to resume was written by another model."""


@dataclass
class OptimConfig:
    """AdamW and its schedules.

    Args:
        lr: peak learning rate (after warm-up).
        start_lr: learning rate at step 0.
        final_lr: learning rate at the end of the cosine.
        warmup_steps: linear warm-up length, in optimizer steps.
        weight_decay, final_weight_decay: weight decay ramps linearly between these (V-JEPA).
        betas: AdamW betas.
        total_steps: schedule length; None: the trainer's ``max_steps`` / estimated steps.
        level_lr_scale: optional per-level multiplier of the learning rate (level 1 first);
            e.g. ``[0.1, 1.0]`` to fine-tune a pretrained level 1 gently.
    """

    lr: float = 1.5e-3
    start_lr: float = 1e-4
    final_lr: float = 1e-5
    warmup_steps: int = 20
    weight_decay: float = 0.04
    final_weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    total_steps: Optional[int] = None
    level_lr_scale: Optional[list[float]] = None

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"config key 'optim.lr' = {self.lr!r}: must be positive")
        if self.warmup_steps < 0:
            raise ValueError(f"config key 'optim.warmup_steps' = {self.warmup_steps!r}: must be >= 0")


class HJEPAModule(L.LightningModule):
    """Pretrains an H-JEPA.

    Args:
        arch: the H-JEPA's architecture (encoder, levels, loss, EMA ramp); on the command
            line ``--model.arch.encoder.name=base``, ``--model.arch.levels='[...]'``.
        optim: optimizer and schedules (``--model.optim.lr=1e-3``).
        init_from: an hjepa checkpoint or export to start from, of the same architecture, with or
            without actions (``hjepa.loading.init_adding_actions``): fine-tunes a video-pretrained
            model with actions (``--model.init_from runs/pretrain/<run>/checkpoints/last.ckpt``).
            A resumed run (``--ckpt_path``) takes every weight from its own checkpoint instead.
    """

    def __init__(self, arch: HJEPAConfig = HJEPAConfig(), optim: OptimConfig = OptimConfig(),
                 init_from: Optional[str] = None) -> None:
        super().__init__()
        model = arch
        self.model_config = model
        self.optim_config = optim
        self.model = build_model(model)  # reads encoder.pretrained, if set
        if init_from:
            init_adding_actions(self.model, init_from)
        if optim.level_lr_scale is not None and len(optim.level_lr_scale) != model.num_levels:
            raise ValueError(
                f"config key 'optim.level_lr_scale' has {len(optim.level_lr_scale)} entries; the model has "
                f"{model.num_levels} levels"
            )
        self._maskers: dict[tuple[int, int, int], Any] = {}  # per window grid, for the masked objective
        self._t_last: float | None = None
        self.seen_video_index: list[int] = []
        self._rng_to_restore: dict[str, Any] | None = None  # from a checkpoint, for the next step
        self._rng_outside_validation: dict[str, Any] | None = None

    # --- schedules ---------------------------------------------------------------------------

    @property
    def total_steps(self) -> int:
        if self.optim_config.total_steps:
            return self.optim_config.total_steps
        trainer = self._trainer
        if trainer is not None:
            if trainer.max_steps and trainer.max_steps > 0:
                return trainer.max_steps
            return max(int(trainer.estimated_stepping_batches), 1)
        return 1

    def lr_at(self, step: int) -> float:
        o = self.optim_config
        return warmup_cosine(step, self.total_steps, o.warmup_steps, o.start_lr, o.lr, o.final_lr)

    def weight_decay_at(self, step: int) -> float:
        o = self.optim_config
        return linear_ramp(step, self.total_steps, o.weight_decay, o.final_weight_decay)

    def momentum_at(self, step: int) -> float:
        c = self.model_config
        return ema_momentum(step, self.total_steps, c.ema_start, c.ema_end)

    # --- optimisation ------------------------------------------------------------------------

    def configure_optimizers(self) -> torch.optim.Optimizer:
        skip = self.model.no_weight_decay()
        scales = self.optim_config.level_lr_scale or [1.0] * self.model.num_levels
        groups: dict[tuple[int, bool], list[torch.nn.Parameter]] = {}
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            level = int(name.split(".")[1])
            no_decay = p.ndim <= 1 or name in skip or name.endswith(".bias")
            groups.setdefault((level, no_decay), []).append(p)
        param_groups = [
            {"params": ps, "lr_scale": scales[lv], "wd_scale": 0.0 if nd else 1.0, "name": f"level{lv + 1}{'_no_wd' if nd else ''}"}
            for (lv, nd), ps in sorted(groups.items())
        ]
        opt = torch.optim.AdamW(param_groups, lr=self.optim_config.lr, betas=self.optim_config.betas)
        self._apply_schedules(opt, 0)
        return opt

    def _apply_schedules(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        lr, wd = self.lr_at(step), self.weight_decay_at(step)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
            g["weight_decay"] = wd * g.get("wd_scale", 1.0)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        self._apply_schedules(optimizer, self.global_step)
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        # The EMA follows every real optimizer step (not every micro-batch of accumulation).
        self.model.update_targets(self.momentum_at(self.global_step))

    # --- steps -------------------------------------------------------------------------------

    def _forward_batch(self, batch: dict[str, Any]):
        clip = to_model_input(batch["clip"])
        masks_enc = masks_pred = None
        if self.model_config.levels[0].masked_weight > 0:
            if "masks_enc" in batch:
                masks_enc, masks_pred = batch["masks_enc"], batch["masks_pred"]
            else:  # no mask collator in the loader: draw V-JEPA's multi-block masks here
                from hjepa.masks import MultiBlockMasks

                grid = self.model.tubelet_grid(clip.shape)
                if grid not in self._maskers:
                    self._maskers[grid] = MultiBlockMasks(grid, seed=self.global_rank)
                masks_enc, masks_pred = self._maskers[grid](clip.shape[0])
                masks_enc = [m.to(clip.device) for m in masks_enc]
                masks_pred = [m.to(clip.device) for m in masks_pred]
        actions = batch.get("actions") if self.model_config.levels[0].actions.enabled else None
        return self.model(clip, masks_enc=masks_enc, masks_pred=masks_pred, actions=actions), clip.shape[0]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if batch["clip"].shape[0] == 0:
            return None  # every sample of this batch was unreadable (counted by the DataModule)
        out, bsz = self._forward_batch(batch)
        logs = out.log_dict(prefix="train/")
        logs["train/lr"] = torch.tensor(self.lr_at(self.global_step))
        logs["train/ema_momentum"] = torch.tensor(self.momentum_at(self.global_step))
        now = time.perf_counter()
        if self._t_last is not None:
            logs["train/clips_per_s"] = torch.tensor(bsz / max(now - self._t_last, 1e-9))
        self._t_last = now
        if "video_index" in batch and len(self.seen_video_index) < 100_000:
            self.seen_video_index.extend(int(i) for i in batch["video_index"].reshape(-1))
        self.log_dict(logs, batch_size=bsz, sync_dist=False)
        self.log("loss", out.loss.detach(), prog_bar=True, logger=False, batch_size=bsz)
        return out.loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if batch["clip"].shape[0] == 0:
            return
        out, bsz = self._forward_batch(batch)
        self.log_dict(out.log_dict(prefix="val/"), batch_size=bsz, sync_dist=True)

    def on_train_epoch_start(self) -> None:
        self._t_last = None

    # --- random streams ----------------------------------------------------------------------

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # The streams saved with the checkpoint are put back just before the first step after a
        # resume, not when the file is read: whatever Lightning does while restarting (building
        # loaders, restoring loops) then cannot shift them.
        if self._rng_to_restore is not None:
            restore_rng(self._rng_to_restore)
            self._rng_to_restore = None

    def on_validation_epoch_start(self) -> None:
        # Validation draws from a fixed seed and leaves training's streams as it found them, so
        # validation scores compare across epochs and a run that validates between two steps
        # (or resumes past a validation) trains on the same random draws as one that does not.
        self._rng_outside_validation = capture_rng()
        torch.manual_seed(VALIDATION_SEED)

    def on_validation_epoch_end(self) -> None:
        if self._rng_outside_validation is not None:
            restore_rng(self._rng_outside_validation)
            self._rng_outside_validation = None

    # --- checkpoints -------------------------------------------------------------------------

    def _input_settings(self) -> InputSettings | None:
        """What the clips of this run look like, from the trainer's data module (None without one:
        a loop that feeds its own batches records nothing, and loading then falls back)."""
        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        make = getattr(datamodule, "input_settings", None)
        return make() if callable(make) else None

    def _non_persistent_buffers(self) -> dict[str, torch.Tensor]:
        saved = self.state_dict(keep_vars=True)
        return {name: buf for name, buf in self.named_buffers() if name not in saved}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain Python values and tensors only, so the file loads with torch.load(weights_only=True).
        checkpoint["hjepa"] = {
            "model_config": self.model_config.to_dict(),
            "optim_config": asdict(self.optim_config),
            **provenance(),
        }
        settings = self._input_settings()
        if settings is not None:
            checkpoint["hjepa"][RECORD_KEY] = settings.to_dict()
        # What an exact resume needs beyond weights, optimizer and loops (the data loader's
        # position and sampler state are Lightning's, from the StatefulDataLoader): the global
        # random streams, the mask generators, and every buffer that state_dict leaves out
        # (non-persistent running statistics behind the logged metrics), whatever they are called.
        mine = self._rank_resume_state(checkpoint)
        checkpoint["hjepa_resume"] = {
            **{k: v for k, v in mine.items() if k != "combined_loader"},
            "buffers": {name: buf.detach().cpu().clone() for name, buf in self._non_persistent_buffers().items()},
            # Lightning writes rank 0's file; every rank's loader position, random streams and
            # mask generators are gathered into it, so each rank resumes exactly where it was.
            "ranks": _gather_objects(mine),
        }

    def _rank_resume_state(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """What differs between ranks: random streams, mask generators, samples seen, loader position."""
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {})
        return {
            "rng": capture_rng(),
            "maskers": [{"grid": list(grid), "seed": m.seed, "generator": m.generator.get_state()}
                        for grid, m in self._maskers.items()],
            "seen_video_index": torch.tensor(self.seen_video_index, dtype=torch.long),
            "combined_loader": fit_loop.get("combined_loader"),
        }

    def _this_ranks_resume_state(self, checkpoint: dict[str, Any], resume: dict[str, Any]) -> dict[str, Any]:
        """This rank's part of the resume state; its loader position replaces rank 0's in the loops."""
        ranks = resume.get("ranks")
        world = self.trainer.world_size if self._trainer is not None else 1
        if not ranks:
            return resume  # written before per-rank state, or by one process
        if len(ranks) != world:
            log.warning("checkpoint written by %d process(es), resumed on %d: the data order and random streams "
                        "continue from rank 0's, not exactly", len(ranks), world)
            return resume
        mine = ranks[self.global_rank]
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict")
        if isinstance(fit_loop, dict) and mine.get("combined_loader") is not None:
            fit_loop["combined_loader"] = mine["combined_loader"]
        return mine

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("hjepa", {}).get("model_config")
        if saved is not None and saved != self.model_config.to_dict():
            from hjepa.loading import describe_config_difference

            raise CheckpointMismatch(
                "checkpoint was written by a model with another configuration: "
                + describe_config_difference(saved, self.model_config.to_dict())
                + ". Resume with the run's own config (--config <run_dir>/config.yaml) or start a new --run_dir"
            )
        resume = checkpoint.get("hjepa_resume")
        if resume is None:
            return  # written before exact resume existed: weights and optimizer only
        for name, value in resume["buffers"].items():
            owner_name, _, leaf = name.rpartition(".")
            try:
                owner = self.get_submodule(owner_name)
            except AttributeError:
                owner = None
            if owner is None or leaf not in owner._buffers:
                raise CheckpointMismatch(
                    f"checkpoint holds buffer {name!r}, which this model does not have; resume with the "
                    "run's own config (--config <run_dir>/config.yaml) or start a new --run_dir"
                )
            # Replaced, not copied into: a running statistic may have grown since the model was built.
            current = owner._buffers[leaf]
            owner._buffers[leaf] = value.to(current.device if current is not None else self.device)
        from hjepa.masks import MultiBlockMasks

        mine = self._this_ranks_resume_state(checkpoint, resume)
        for m in mine["maskers"]:
            masker = MultiBlockMasks(tuple(m["grid"]), seed=m["seed"])
            masker.generator.set_state(m["generator"])
            self._maskers[tuple(m["grid"])] = masker
        self.seen_video_index = mine["seen_video_index"].tolist()
        self._rng_to_restore = mine["rng"]


def _gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` outside a process group)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    out: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out
