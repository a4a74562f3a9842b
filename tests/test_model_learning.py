"""It learns: on clips whose future is predictable, the H-JEPA's loss falls, its
representations do not collapse, and level 1 predicts held-out clips better than every simple
baseline (copy-the-present, the per-(slot, token) mean target, copy + slot offset), while on
noise clips, where nothing can be predicted, it does not.

The clip set: bright squares moving at constant velocity (bouncing off the borders) over a
dark background. Two frames later a square has moved by a few pixels, so "the future looks
like the present" is wrong in a way a model can learn to correct.
"""

from __future__ import annotations

import torch

from hjepa.losses import baseline_skill, effective_rank
from hjepa.models.config import EncoderConfig, HJEPAConfig, LevelConfig, PredictorConfig
from hjepa.models.hierarchy import HJEPA
from hjepa.train.schedules import ema_momentum, warmup_cosine

STEPS = 150
# Thresholds the test holds the model to (measured values are printed with -s).
LOSS_DROP = 0.6  # final level-1 loss <= 60 % of the first
MIN_SKILL = 0.1  # level-1 error <= 90 % of the best baseline's, on held-out clips
MAX_NOISE_SKILL = 0.02  # and no skill on i.i.d. noise clips
MIN_EFF_RANK = 4.0  # of level-1 step embeddings (width 48), i.e. not collapsed
MIN_STD = 0.05  # per-dimension std of layer-normed targets


def moving_squares(batch: int, frames: int, size: int, g: torch.Generator) -> torch.Tensor:
    """[B, 3, T, H, W] clips in [-1, 1]: two coloured 6x6 squares moving and bouncing."""
    clip = torch.full((batch, 3, frames, size, size), -1.0)
    for b in range(batch):
        for _ in range(2):
            pos = torch.rand(2, generator=g) * (size - 6)
            vel = (torch.rand(2, generator=g) * 2 - 1) * 2.5
            colour = torch.rand(3, generator=g) * 2 - 0.5
            for t in range(frames):
                y, x = int(pos[0]), int(pos[1])
                clip[b, :, t, y : y + 6, x : x + 6] = colour[:, None, None]
                pos = pos + vel
                for d in range(2):  # bounce
                    if pos[d] < 0 or pos[d] > size - 6:
                        vel[d] = -vel[d]
                        pos[d] = pos[d].clamp(0, size - 6)
    return clip


def level1_skill(model: HJEPA, clips: torch.Tensor) -> float:
    """Level 1's skill on ``clips`` against the best baseline, slot means taken on these clips."""
    level1 = model.predict(clips)[0]
    t, j = torch.nonzero(level1.valid, as_tuple=True)  # context end, horizon - 1
    pairs = torch.stack([t, j + 1], dim=1)
    return float(baseline_skill(level1.pred[:, t, j], level1.present, pairs, model.window_slots(0)))


def test_hjepa_learns_to_predict_moving_patterns() -> None:
    torch.manual_seed(0)
    pred = PredictorConfig(embed_dim=48, depth=2, num_heads=4)
    cfg = HJEPAConfig(
        frames_per_window=8,
        encoder=EncoderConfig(name="micro", patch_size=8, embed_dim=48, depth=2, num_heads=4),
        levels=[
            LevelConfig(horizon=2, predictor=pred),
            LevelConfig(embed_dim=48, depth=1, num_heads=4, stride=2, num_queries=2, horizon=1, predictor=pred),
        ],
        ema_start=0.99,
    )
    model = HJEPA(cfg).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, weight_decay=0.04)
    g = torch.Generator().manual_seed(0)
    history = []
    for step in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = warmup_cosine(step, STEPS, 20, 1e-4, 2e-3, 1e-4)
        clip = moving_squares(8, 16, 32, g)
        out = model(clip)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.update_targets(ema_momentum(step + 1, STEPS, cfg.ema_start, cfg.ema_end))
        history.append({k: float(v) for k, v in out.levels[0].stats.items()})

    first = sum(h["pred_loss"] for h in history[:10]) / 10
    model.eval()
    held_out = moving_squares(16, 16, 32, torch.Generator().manual_seed(99))
    noise = torch.rand(16, 3, 16, 32, 32, generator=torch.Generator().manual_seed(98)) * 2 - 1
    skill, noise_skill = (level1_skill(model, clips) for clips in (held_out, noise))
    level1 = model.predict(held_out)[0]
    err = (level1.pred - level1.target).abs()[:, level1.valid].mean()
    targets = model.encode(held_out)[0].target
    rank = float(effective_rank(targets.mean(dim=2)))
    std = float(targets.reshape(-1, targets.shape[-1]).std(0).mean())
    print(f"level-1 loss {first:.3f} -> {float(err):.3f}; skill {skill:.3f} (noise {noise_skill:.3f}); "
          f"eff. rank {rank:.1f}; std {std:.3f}")
    assert float(err) <= LOSS_DROP * first
    assert skill >= MIN_SKILL
    assert noise_skill <= MAX_NOISE_SKILL
    assert rank >= MIN_EFF_RANK
    assert std >= MIN_STD
