"""The benchmarks time and count what they say: the Trainer's own step, every FLOP of attention."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from hjepa.bench.measure import count_flops
from hjepa.bench.model_step import config_setup, run, vits16_setup
from hjepa.bench.train_step import HJEPATrainStep, random_batch
from hjepa.models.config import EncoderConfig, HJEPAConfig, LevelConfig, PredictorConfig
from hjepa.train.module import HJEPAModule, OptimConfig


def _tiny_arch() -> HJEPAConfig:
    return HJEPAConfig(frames_per_window=8, encoder=EncoderConfig(name="micro"),
                       levels=[LevelConfig(horizon=2, predictor=PredictorConfig(embed_dim=32, depth=1, num_heads=2)),
                               LevelConfig(stride=2, num_queries=2, embed_dim=32, depth=1, num_heads=2, horizon=1)])


def test_the_benchmarked_step_is_the_trainers_step() -> None:
    """One HJEPATrainStep call and one step of a real Lightning Trainer, from the same weights on
    the same batch, end with identical weights (and EMA targets)."""
    torch.manual_seed(0)
    arch, optim = _tiny_arch(), OptimConfig(lr=1e-3, start_lr=1e-3, warmup_steps=0)
    batch = random_batch(2, 16, 32, torch.device("cpu"))
    bench = HJEPATrainStep(arch, optim, gradient_clip_val=0.5, device=torch.device("cpu"))
    module = HJEPAModule(arch, optim)
    initial = copy.deepcopy(bench.module.state_dict())
    module.load_state_dict(initial)

    bench(batch)
    trainer = L.Trainer(max_steps=1, gradient_clip_val=0.5, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([batch["clip"][0], batch["clip"][1]],
                                                                      batch_size=2, collate_fn=lambda x: {"clip": torch.stack(x)}))
    ours, theirs = bench.module.state_dict(), module.state_dict()
    assert ours.keys() == theirs.keys()
    changed = [k for k in ours if not torch.equal(ours[k], theirs[k])]
    assert not changed, changed[:5]
    moved = [k for k in ours if not torch.equal(ours[k], initial[k])]
    assert len(moved) > len(ours) // 2  # the step did train: most tensors (weights, EMA copies) moved


def test_flop_count_includes_cpu_attention() -> None:
    """torch's counter has no formula for the CPU attention kernel; ours adds the dense one."""
    q = torch.randn(2, 4, 64, 16, requires_grad=True)
    counted = count_flops(lambda: F.scaled_dot_product_attention(q, q, q)).total
    assert counted == 2 * (2 * 2 * 4 * 64 * 64 * 16)  # QK^T and AV, a multiply-add counts 2
    counted_bwd = count_flops(lambda: F.scaled_dot_product_attention(q, q, q).sum().backward()).total
    # forward again, then torch's backward formula: QK^T recomputed and four products of gradients
    assert counted_bwd == counted + 5 * counted // 2


def test_setups_from_sizes_and_from_a_config_file() -> None:
    setup = vits16_setup()
    assert (setup.arch.encoder.name, setup.frames, setup.size, setup.batch) == ("small", 16, 128, 4)
    default = config_setup("configs/pretrain/default.yaml")
    assert (default.frames, default.size, default.batch, default.arch.num_levels) == (32, 64, 8, 2)
    assert default.gradient_clip_val == 1.0 and default.optim.lr == 1.5e-3


def test_windows_rows_are_per_clip_and_per_window() -> None:
    from hjepa.bench.model_step import BenchSetup

    setup = BenchSetup(_tiny_arch(), OptimConfig(), 1.0, 16, 32, 1, "tiny")
    result = run(setup, torch.device("cpu"), warmup=0, repeats=1, reference=False, windows=[2, 4])
    rows = result["windows"]
    assert [r["frames"] for r in rows] == [16, 32]
    assert all(r["s_per_window"] == pytest.approx(r["s_per_clip"] / r["windows"]) for r in rows)
    assert result["ours_gflop_per_clip"] > 0 and "speedup_vs_reference" not in result


def test_a_context_keeping_part_of_each_step_costs_fewer_flops() -> None:
    """Level 1's context_keep applied to a setup: the context encoder with gradient runs on fewer
    tokens, the rest of the step (whole targets, every query) stays."""
    from hjepa.bench.model_step import BenchSetup

    base = BenchSetup(_tiny_arch(), OptimConfig(), 1.0, 16, 64, 2, "tiny")
    half = base.with_context_keep(0.5)
    assert half.arch.levels[0].context_keep == 0.5 and half.arch.levels[1] == base.arch.levels[1]
    batch = random_batch(2, 16, 64, torch.device("cpu"))
    flops = {}
    for name, s in (("whole", base), ("half", half)):
        torch.manual_seed(0)
        step = HJEPATrainStep(s.arch, s.optim, s.gradient_clip_val, torch.device("cpu"))
        flops[name] = count_flops(lambda: step(batch), depth=2)
    assert flops["half"].total < flops["whole"].total
    # The context encoder's own forward: half the tokens, about half the FLOPs (the patch
    # embedding runs on every tubelet before the choice; attention shrinks by more).
    level = step.module.model.levels[0]
    clip = torch.randn(2, 3, 16, 64, 64)
    with torch.no_grad():
        whole_fwd = count_flops(lambda: level.encoder(clip)).total
        kept = level.encoder.draw_kept(clip.shape, 8, clip.device)
        half_fwd = count_flops(lambda: level.encoder.encode_kept(clip, kept)).total
    assert 0.4 * whole_fwd < half_fwd < 0.6 * whole_fwd
    with pytest.raises(Exception, match="context_keep"):
        base.with_context_keep(0.0)
