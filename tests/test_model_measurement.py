"""What the model's measurements rest on: deterministic targets with no slot or context in them,
predictions that depend on step offsets only, a causal and batch-independent rollout, and
collapse statistics that reach their collapse values."""

from __future__ import annotations

import pytest
import torch

from hjepa.losses import baseline_skill, effective_rank, feature_std
from hjepa.models.config import EncoderConfig, HJEPAConfig, LevelConfig, PredictorConfig
from hjepa.models.hierarchy import HJEPA

PRED = PredictorConfig(embed_dim=32, depth=2, num_heads=2)


def config(pos_embed: str = "sincos", window: int | None = 2, drop_path: float = 0.0) -> HJEPAConfig:
    """Level 1: 4-frame windows of 2-frame steps (2 slots); level 2: one step per window."""
    enc = EncoderConfig(name="micro", patch_size=8, embed_dim=32, depth=2, num_heads=2, pos_embed=pos_embed,
                        drop_path_rate=drop_path)
    return HJEPAConfig(
        frames_per_window=4,
        encoder=enc,
        levels=[
            LevelConfig(horizon=2, predictor=PRED, context_window=window),
            LevelConfig(embed_dim=32, depth=2, num_heads=2, stride=2, num_queries=2, horizon=1,
                        predictor=PredictorConfig(embed_dim=32, depth=1, num_heads=2), context_window=window),
        ],
    )


def model_for(cfg: HJEPAConfig, seed: int = 0) -> HJEPA:
    torch.manual_seed(seed)
    return HJEPA(cfg).double().eval()


def clip(windows: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 4 * windows, 16, 16, generator=g, dtype=torch.float64)


def test_targets_are_deterministic_in_train_mode_with_stochastic_depth() -> None:
    model = model_for(config(drop_path=0.5)).train()
    x = clip(3)
    for level in model.levels:
        assert not level.target_encoder.training  # train() leaves the EMA copy in eval mode
    a, b = model.levels[0].encode_target(x), model.levels[0].encode_target(x)
    assert torch.equal(a, b)
    out_a, out_b = model(x), model(x)
    assert torch.equal(out_a.levels[1].target, out_b.levels[1].target)  # level 2 reads fixed inputs
    # the context encoder does drop paths in training (so the check above could fail)
    assert not torch.equal(model.levels[0].encode_context(x), model.levels[0].encode_context(x))


@pytest.mark.parametrize("pos_embed", ["sincos", "rope"])
def test_a_step_target_depends_on_its_own_frames_only(pos_embed: str) -> None:
    model = model_for(config(pos_embed))
    x = clip(3)
    enc = model.encode(x)
    for t in (0, 1, 3):  # slot 0 and slot 1 of windows 0 and 1
        changed = x.clone()
        keep = slice(2 * t, 2 * t + 2)
        noise = torch.randn_like(changed) * 3
        noise[:, :, keep] = 0
        changed = changed + noise
        other = model.encode(changed)
        assert torch.equal(enc[0].target[:, t], other[0].target[:, t]), t
        assert not torch.equal(enc[0].context[:, t + 1 :], other[0].context[:, t + 1 :])


@pytest.mark.parametrize("pos_embed", ["sincos", "rope"])
def test_a_static_scene_gives_the_same_target_in_every_slot(pos_embed: str) -> None:
    model = model_for(config(pos_embed))
    frame = clip(1)[:, :, :1]
    still = frame.expand(-1, -1, 12, -1, -1).contiguous()  # 3 windows, 6 steps, 2 slots each
    enc = model.encode(still)
    for k in (0, 1):
        target = enc[k].target
        torch.testing.assert_close(target, target[:, :1].expand_as(target), atol=1e-10, rtol=0)


def test_long_clip_predictions_equal_short_clip_predictions_past_the_receptive_field() -> None:
    # Relative time and a bounded context: a step far enough from the clip start is predicted
    # the same wherever the clip starts. Receptive field with context window 2: level 1, two
    # predictor blocks -> steps t-2..t; level 2, two encoder blocks then one predictor block -> t-3..t.
    model = model_for(config(window=2))
    long = clip(8)
    short = long[:, :, 4 * 4 :]  # the last 4 windows
    pl, ps = model.predict(long), model.predict(short)
    offset = [8, 4]  # level-1 steps / level-2 steps in the 4 dropped windows
    for k, first in ((0, 2), (1, 3)):
        s_short = ps[k].pred.shape[1]
        for t in range(first, s_short):
            torch.testing.assert_close(pl[k].pred[:, offset[k] + t], ps[k].pred[:, t], atol=1e-9, rtol=0)
    # with an unbounded context the long clip's predictions differ (the check above can fail)
    unbounded = model_for(config(window=None))
    a, b = unbounded.predict(long)[0].pred[:, 8 + 2], unbounded.predict(short)[0].pred[:, 2]
    assert (a - b).abs().max() > 1e-6


@pytest.mark.parametrize("pos_embed", ["sincos", "rope"])
@pytest.mark.parametrize("train", [False, True])
def test_rollout_is_causal_and_independent_of_batch_mates(pos_embed: str, train: bool) -> None:
    model = model_for(config(pos_embed)).train(train)
    x = clip(4, batch=3)
    grid = model.patch_grid(x.shape)
    end = 3  # level-1 step 3: frames 0..7
    with torch.no_grad():
        base = model.rollout_steps(model.encode(x)[0].context, 0, end, 5, grid)
        changed = x.clone()
        changed[:, :, 8:] = torch.randn_like(changed[:, :, 8:]) * 3
        after = model.rollout_steps(model.encode(changed)[0].context, 0, end, 5, grid)
        assert torch.equal(base, after)  # frames after the context end are never read
        mates = torch.cat([x[1:2], clip(4, batch=4, seed=5)])  # clip 1 with other batch-mates
        alone = model.rollout_steps(model.encode(x[1:2])[0].context, 0, end, 5, grid)
        among = model.rollout_steps(model.encode(mates)[0].context, 0, end, 5, grid)[:1]
    torch.testing.assert_close(alone, base[1:2], atol=1e-12, rtol=0)
    torch.testing.assert_close(among, alone, atol=1e-12, rtol=0)


def test_collapse_statistics_reach_their_collapse_values() -> None:
    model = model_for(config()).float().train()
    blank = torch.zeros(8, 3, 12, 16, 16)
    random = torch.randn(8, 3, 12, 16, 16)
    for _ in range(3):  # the running rank buffer fills over steps
        collapsed, healthy = model(blank), model(random)
    for k in (0, 1):
        assert float(collapsed.levels[k].stats["std"]) < 0.05
        assert float(collapsed.levels[k].stats["target_std"]) < 0.05
    model.train()
    model.levels[0].rank_rows.reset()
    for _ in range(3):
        rank_blank = float(model(blank).levels[0].stats["eff_rank"])
    model.levels[0].rank_rows.reset()
    for _ in range(3):
        rank_random = float(model(random).levels[0].stats["eff_rank"])
    assert rank_blank < 2 and rank_random > 8
    assert float(healthy.levels[0].stats["std"]) > 0.3
    # identical rows of any value: rank 1, std 0; rows spread in every direction: rank ~ D
    rows = torch.randn(1, 32).expand(256, 32)
    assert float(effective_rank(rows)) == 1.0 and float(feature_std(rows)) == 0.0
    assert float(effective_rank(torch.randn(256, 32))) > 25


def test_skill_is_zero_for_the_best_baseline_and_positive_only_beyond_it() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randn(4, 6, 3, 8, generator=g)
    pairs = torch.tensor([[0, 1], [1, 1], [2, 2], [3, 1]])
    future, present = target[:, pairs.sum(1)], target[:, pairs[:, 0]]
    assert float(baseline_skill(future, target, pairs, slots=2)) == pytest.approx(1.0)
    assert float(baseline_skill(present, target, pairs, slots=2)) <= 1e-6  # copy is one of the baselines
    # a slot code: targets differ by slot; copy + slot offset then beats copy, and skill is 0 for it
    coded = target * 0.1 + torch.tensor([0.0, 3.0]).repeat(3)[None, :, None, None]
    m = torch.stack([coded[:, 0::2].mean((0, 1)), coded[:, 1::2].mean((0, 1))])
    offset = coded[:, pairs[:, 0]] + m[pairs.sum(1) % 2] - m[pairs[:, 0] % 2]
    assert float(baseline_skill(offset, coded, pairs, slots=2)) <= 1e-6


def test_saved_configs_from_before_step_targets_and_relative_time_load_as_trained() -> None:
    saved = HJEPAConfig().to_dict()
    for level in saved["levels"]:
        del level["target_input"], level["context_window"], level["time_encoding"]
    cfg = HJEPAConfig.from_dict(saved)
    for level in cfg.levels:
        assert level.target_input == "causal" and level.context_window is None
        assert level.time_encoding == "absolute"
    assert HJEPAConfig.from_dict(HJEPAConfig().to_dict()) == HJEPAConfig()
    with pytest.raises(ValueError, match="target_input"):
        LevelConfig(target_input="future")
    with pytest.raises(ValueError, match="context_window"):
        LevelConfig(context_window=0)
    with pytest.raises(ValueError, match="time_encoding"):
        LevelConfig(time_encoding="relative")


def test_anticipation_features_do_not_depend_on_batch_mates() -> None:
    from hjepa.anticipation.features import clip_features

    model = model_for(config())
    x = clip(4, batch=3)
    alone = clip_features(model, x[1:2], [1.0], [8.0], num_levels=2)
    among = clip_features(model, x, [2.0, 1.0, 0.5], [8.0] * 3, num_levels=2)
    assert alone.keys() == among.keys() and "pred1" in alone
    for key, value in alone.items():
        torch.testing.assert_close(among[key][1:2], value, atol=1e-12, rtol=0, msg=key)
