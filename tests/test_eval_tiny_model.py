"""A briefly trained tiny H-JEPA on the synthetic data, shared by the evaluation and
visualisation tests (``from test_eval_tiny_model import tiny_export``).

Training runs once per test session (the result is memoised in this module), with a plain
PyTorch loop on the synthetic training split, and the model is written with
``hjepa.export.export_model`` so the tests load it the way users do (``hjepa.load_pretrained``).

The synthetic world (:data:`WORLD`) is the generator's with the pixel distractors off, larger
and faster objects, and a new view at every activity: object positions are then predictable
within an activity (level 1's job) but not past it, while the activity sequence stays
predictable from the recipe (level 2's job). 300 steps take 65-85 s on two CPU cores.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from hjepa.data.dataset import ClipCollator, SyntheticClipDataset
from hjepa.data.sampling import ClipSampler
from hjepa.data.synthetic import SyntheticConfig, SyntheticVideos
from hjepa.data.transforms import to_model_input
from hjepa.export import export_model
from hjepa.input_settings import InputSettings
from hjepa.models.config import EncoderConfig, HJEPAConfig, LevelConfig, PredictorConfig
from hjepa.models.hierarchy import HJEPA
from hjepa.train.schedules import ema_momentum, warmup_cosine

TRAIN_STEPS = 300
WORLD = dict(noise_std=0.0, num_flicker_patches=0, object_size=0.12, speed=0.05, reposition_prob=1.0,
             num_recipes=4, deviation_prob=0.0, min_activity_frames=12, max_activity_frames=16)
LR = 2e-3
EMA_START = 0.99  # a faster target update than the default suits a run this short
RESOLUTION = 32
NUM_WINDOWS = 4


def tiny_config(pos_embed: str = "sincos", **overrides) -> HJEPAConfig:
    """Level 1: a 2-block ViT on 8x8 patches of 32 px frames (16 tokens, 2-frame steps);
    level 2: 4 level-1 steps per step (8 frames = 1 s of the 8 fps synthetic videos).

    Level 2's loss weighs 4: a 4-window clip gives it 5 (context, horizon) pairs against level
    1's 29. With weight 1 (300 steps), its step embeddings had effective rank 4.9 and its 2 s
    retrieval among all steps lost to level 1 rolled out (top-1 6 % vs 8 %).

    Level 2 mean-pools each step's 4 level-1 steps into 16 tokens, one per level-1 patch. With
    attentive pooling into 4 or 16 queries, it kept nothing of the scene: a ridge regression
    from its context to the objects' positions scored R^2 0.00-0.01, and its context tokens had an
    effective rank of 9-19 (``docs/anticipation_feature_probe.py``); mean-pooled to 16 tokens,
    R^2 0.50-0.71 and effective rank 106-137.

    Level 2's VICReg terms count every token as a sample (``vicreg_samples="tokens"``): with
    one sample per step (the tokens' mean) it kept the positions but not the activity, and a
    head on levels 1-2 anticipated no better than one on level 1 (``test_anticipation_e2e``)."""
    pred = PredictorConfig(embed_dim=64, depth=2, num_heads=4)
    return HJEPAConfig(
        frames_per_window=8,
        encoder=EncoderConfig(name="micro", patch_size=8, embed_dim=64, depth=2, num_heads=4, pos_embed=pos_embed),
        levels=[
            LevelConfig(horizon=2, predictor=pred),
            LevelConfig(embed_dim=64, depth=2, num_heads=4, stride=4, num_queries=16, pooling="mean", horizon=2,
                        predictor=pred, loss_weight=4.0, vicreg_samples="tokens"),
        ],
        **overrides,
    )


def synthetic_config(**overrides) -> SyntheticConfig:
    return SyntheticConfig(**{"resolution": RESOLUTION, "num_train_videos": 128, "num_val_videos": 64, **WORLD,
                              **overrides})


def train_tiny(out_dir: Path, steps: int = TRAIN_STEPS, seed: int = 0, lr: float = LR,
               synthetic: dict | None = None, **overrides) -> tuple[Path, dict]:
    """Train the tiny model for ``steps`` AdamW steps and export it; returns (folder, log)."""
    torch.manual_seed(seed)
    cfg = tiny_config(**{"ema_start": EMA_START, **overrides})
    model = HJEPA(cfg)
    syn = synthetic_config(**(synthetic or {}))
    sampler = ClipSampler(cfg.frames_per_window, NUM_WINDOWS)
    data = SyntheticClipDataset(SyntheticVideos(syn), "train", sampler, train=True, seed=seed)
    loader = DataLoader(data, batch_size=8, shuffle=True, drop_last=True,
                        collate_fn=ClipCollator(sampler.num_frames, RESOLUTION, num_objects=syn.num_objects))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.04)
    losses, step, t0 = [], 0, time.perf_counter()
    model.train()
    while step < steps:
        for batch in loader:
            for group in opt.param_groups:
                group["lr"] = warmup_cosine(step, steps, 10, 1e-4, lr, 1e-5)
            out = model(to_model_input(batch["clip"]))
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            model.update_targets(ema_momentum(step, steps, cfg.ema_start, cfg.ema_end))
            losses.append(float(out.loss.detach()))
            step += 1
            if step >= steps:
                break
    model.eval()
    record = InputSettings(resolution=RESOLUTION, frames_per_window=cfg.frames_per_window, num_windows=NUM_WINDOWS,
                           source_fps=syn.fps, synthetic=dataclasses.asdict(syn))
    folder = export_model(model, {"model_config": cfg.to_dict(), "input_settings": record.to_dict()}, out_dir)
    return folder, {"losses": losses, "seconds": time.perf_counter() - t0}


_CACHE: dict[str, tuple[Path, dict]] = {}


def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The export folder and training log, trained once per session."""
    if "tiny" not in _CACHE:
        _CACHE["tiny"] = train_tiny(tmp_path_factory.mktemp("tiny_hjepa"))
    return _CACHE["tiny"]


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained(tmp_path_factory)[0]


def test_tiny_model_trains_and_loads(tmp_path_factory):
    import hjepa

    folder, log = trained(tmp_path_factory)
    losses = log["losses"]
    assert len(losses) == TRAIN_STEPS and all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)
    model = hjepa.load_pretrained(folder)
    assert model.config.to_dict() == tiny_config(ema_start=EMA_START).to_dict()
