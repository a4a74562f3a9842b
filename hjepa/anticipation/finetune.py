"""Fine-tuning: the backbone trains under the main head, with a learning rate per level."""

from __future__ import annotations

import logging
import math
import random

import torch
from torch import nn

from hjepa.anticipation.config import AnticipationConfig
from hjepa.anticipation.data import PreparedData
from hjepa.anticipation.features import autocast, clip_features, extract_features, model_input
from hjepa.anticipation.head import head_loss
from hjepa.anticipation.head_training import HeadSpec, TrainResult, main_head_name, param_groups, set_input_stats
from hjepa.anticipation.windows import WindowPlan, draw_tau_a
from hjepa.heads.fit import fit

log = logging.getLogger(__name__)


def finetune(cfg: AnticipationConfig, model: nn.Module, heads: nn.ModuleDict, specs: list[HeadSpec],
             ds: PreparedData, T: int, num_levels: int, device: torch.device, rng: random.Random) -> TrainResult:
    """Train the backbone (per-level learning rates) under the main head; ablation heads read detached features.

    Level k's context encoder and predictor train at ``level_lrs[k]`` (0: frozen); the EMA target
    encoders stay as pretrained, since predictions live in their space. The backbone runs in eval
    mode (no dropout or drop-path), so features are the ones the probe would see. Training clips
    get fresh ``tau_a`` draws every epoch when ``window.tau_a_range`` is set.
    """
    lrs = cfg.level_lrs if cfg.level_lrs is not None else [0.1 * cfg.optim.lr] * num_levels
    groups = param_groups(heads, cfg.optim.weight_decay, cfg.optim.lr)
    model.requires_grad_(False)
    for k, lr in enumerate(lrs):
        trainable = model.trainable_parts(k)  # never the EMA target encoder
        if lr > 0 and trainable:
            for m in trainable:
                m.requires_grad_(True)
            groups += param_groups(nn.ModuleList(trainable), cfg.optim.weight_decay, lr)
    heads.to(device).train()
    main = main_head_name(num_levels)
    first_plan = ds.plan(ds.train, T, draw_tau_a(len(ds.train), cfg.window.tau_a, cfg.window.tau_a_range, rng))
    # Input standardisation from the pretrained features of (up to) 256 training clips, fixed from then on.
    sample = WindowPlan(first_plan.items[:256], 0, 0, 0)
    set_input_stats(heads, specs, extract_features(model, ds, sample, num_levels, device, cfg, "train").features.tokens)
    steps_per_epoch = math.ceil(len(first_plan.items) / cfg.optim.batch_size)
    total, warmup = cfg.optim.epochs * steps_per_epoch, int(cfg.optim.warmup_epochs * steps_per_epoch)
    state = {"plan": first_plan, "seen": 0, "samples": 0}
    sums: dict[str, float] = {}
    last: dict[str, float] = {}

    def batches(epoch: int):
        plan = first_plan if epoch == 0 else ds.plan(
            ds.train, T, draw_tau_a(len(ds.train), cfg.window.tau_a, cfg.window.tau_a_range, rng))
        state.update(plan=plan, seen=0)
        sums.update({s.name: 0.0 for s in specs})
        return ds.loader(plan, True, cfg.optim.batch_size, cfg.seed + epoch)

    def loss_fn(batch) -> torch.Tensor | None:
        if batch["clip"] is None:
            return None
        plan = state["plan"]
        items = [plan.items[i] for i in batch["index"].tolist()]
        targets = {k: v.to(device) for k, v in ds.targets([s for s, _ in items]).items()}
        keep = targets[ds.vocab.outputs[0]] >= 0
        if not keep.any():
            return None
        with autocast(device, cfg.precision):
            feats = clip_features(model, model_input(batch["clip"], device), [w.tau_a for _, w in items],
                                  [ds.rate(ds.video_info[s.video_id]) for s, _ in items], num_levels, grad=True,
                                  token_grid=cfg.token_grid, context_steps=cfg.context_steps)
        targets = {k: v[keep] for k, v in targets.items()}
        loss = 0.0
        for spec in specs:
            src = [feats[s][keep] if spec.name == main else feats[s][keep].detach() for s in spec.sources]
            l_head = head_loss(heads[spec.name](src), targets, cfg.optim.loss, cfg.optim.label_smoothing,
                               cfg.optim.focal_gamma, cfg.optim.focal_alpha)
            sums[spec.name] += l_head.item() * int(keep.sum())
            loss = loss + l_head
        state["seen"] += int(keep.sum())
        return loss  # type: ignore[return-value]

    def on_epoch(epoch: int) -> None:
        state["samples"] += state["seen"]
        last.clear()
        last.update({k: v / max(state["seen"], 1) for k, v in sums.items()})
        log.info("epoch %d/%d %s", epoch + 1, cfg.optim.epochs, " ".join(f"{k}={v:.3f}" for k, v in last.items()))

    fit(heads, groups, batches, loss_fn, cfg.optim.epochs, cfg.optim.lr, total_steps=total, warmup_steps=warmup,
        on_epoch=on_epoch)
    model.requires_grad_(False)
    model.eval()
    return TrainResult(last, state["samples"] // cfg.optim.epochs, first_plan.dropped_unobservable, first_plan.clamped)
