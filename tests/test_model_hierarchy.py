"""The H-JEPA model: gradients, exact causality, window batching, EMA, determinism, shapes."""

from __future__ import annotations

import itertools

import pytest
import torch

from hjepa.models.config import EncoderConfig, HJEPAConfig, LatentConfig, LevelConfig, PredictorConfig
from hjepa.models.hierarchy import HJEPA
from hjepa.models.level import future_pairs
from hjepa.train.schedules import ema_momentum

SMALL_PRED = PredictorConfig(embed_dim=32, depth=1, num_heads=2)


def tiny_config(num_levels: int = 2, pos_embed: str = "sincos", latent: int = 0, attention: str = "causal") -> HJEPAConfig:
    levels = [LevelConfig(horizon=2, predictor=SMALL_PRED, latent=LatentConfig(dim=latent))]
    for _ in range(num_levels - 1):
        levels.append(LevelConfig(embed_dim=32, depth=1, num_heads=2, stride=2, num_queries=2, horizon=1,
                                  predictor=SMALL_PRED, latent=LatentConfig(dim=latent)))
    enc = EncoderConfig(name="micro", patch_size=8, pos_embed=pos_embed, temporal_attention=attention,
                        embed_dim=32, depth=2, num_heads=2)
    return HJEPAConfig(frames_per_window=4, encoder=enc, levels=levels)


def clip_for(cfg: HJEPAConfig, batch: int = 2, extra_windows: int = 0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = cfg.min_frames() + extra_windows * cfg.frames_per_window
    return torch.randn(batch, 3, t, 16, 16, generator=g)


@pytest.mark.parametrize(
    "num_levels,pos_embed,latent", list(itertools.product([1, 2, 3], ["sincos", "rope"], [0, 3]))
)
def test_every_trainable_parameter_gets_a_gradient(num_levels: int, pos_embed: str, latent: int) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(num_levels, pos_embed, latent)
    model = HJEPA(cfg).train()
    out = model(clip_for(cfg))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    nan = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not nan, f"non-finite gradients: {nan}"
    for k, level in enumerate(model.levels):
        assert level.target_encoder is not None
        for n, p in level.target_encoder.named_parameters():
            assert not p.requires_grad and p.grad is None, f"EMA target of level {k + 1} got a gradient: {n}"
    assert len(out.levels) == num_levels
    for lv in out.levels:
        for name in ("loss", "std", "eff_rank", "copy_ratio"):
            assert torch.isfinite(lv.stats[name]), name


@pytest.mark.parametrize("num_levels", [2, 3])
def test_changing_the_future_changes_no_past_representation_or_prediction(num_levels: int) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(num_levels)
    model = HJEPA(cfg).eval()
    clip = clip_for(cfg, extra_windows=1)
    frames = clip.shape[2]
    for context_end in (cfg.step_frames(num_levels - 1) - 1, frames // 2 - 1):
        changed = clip.clone()
        changed[:, :, context_end + 1 :] = torch.randn_like(changed[:, :, context_end + 1 :]) * 3
        enc_a, enc_b = model.encode(clip), model.encode(changed)
        pred_a, pred_b = model.predict(clip), model.predict(changed)
        checked = 0
        for k in range(num_levels):
            past = enc_a[k].end_frames <= context_end  # steps fully inside the unchanged part
            checked += int(past.sum())
            assert torch.equal(enc_a[k].context[:, past], enc_b[k].context[:, past]), f"level {k + 1} context"
            assert torch.equal(enc_a[k].target[:, past], enc_b[k].target[:, past]), f"level {k + 1} target"
            ends = pred_a[k].context_end_frames <= context_end
            assert torch.equal(pred_a[k].pred[:, ends], pred_b[k].pred[:, ends]), f"level {k + 1} prediction"
            # and the change is visible after the context end (the test can fail)
            if (~past).any():
                assert not torch.equal(enc_a[k].target[:, ~past], enc_b[k].target[:, ~past])
        assert checked > 0


def test_windows_one_at_a_time_equal_windows_batched() -> None:
    torch.manual_seed(0)
    cfg = tiny_config(2)
    model = HJEPA(cfg).eval()
    clip = clip_for(cfg, extra_windows=1)
    f = cfg.frames_per_window
    level1 = model.levels[0]
    batched = level1.encode_target(clip)  # [B, S, N, D]
    one_by_one = torch.cat(
        [level1.encode_target(clip[:, :, w * f : (w + 1) * f]) for w in range(clip.shape[2] // f)], dim=1
    )
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=1e-5)


def test_shapes_and_step_times_follow_the_strides() -> None:
    cfg = tiny_config(3)
    model = HJEPA(cfg).eval()
    clip = clip_for(cfg)
    t = clip.shape[2]
    enc = model.encode(clip)
    step = [cfg.encoder.tubelet_size, cfg.encoder.tubelet_size * 2, cfg.encoder.tubelet_size * 4]
    for k, e in enumerate(enc):
        assert e.step_frames == step[k]
        s = t // step[k]
        q = 4 if k == 0 else 2  # level 1: a 2x2 patch grid of a 16x16 frame with patch 8
        assert e.target.shape == (2, s, q, 32)
        assert e.start_frames.tolist() == [i * step[k] for i in range(s)]
        assert e.end_frames.tolist() == [(i + 1) * step[k] - 1 for i in range(s)]
    preds = model.predict(clip)
    for k, p in enumerate(preds):
        h = cfg.levels[k].horizon
        s = t // step[k]
        assert p.pred.shape[:3] == (2, s, h)
        assert p.valid.tolist() == [[i + j < s for j in range(1, h + 1)] for i in range(s)]
        assert p.target_end_frames[0, 0] == 2 * step[k] - 1
        assert p.horizon_frames.tolist() == [j * step[k] for j in range(1, h + 1)]


def test_full_attention_level1_steps_are_windows() -> None:
    cfg = tiny_config(2, attention="full")
    model = HJEPA(cfg).eval()
    clip = clip_for(cfg)
    enc = model.encode(clip)
    assert enc[0].step_frames == cfg.frames_per_window
    assert enc[0].target.shape[1] == clip.shape[2] // cfg.frames_per_window


def test_too_short_clip_is_refused_with_the_numbers() -> None:
    cfg = tiny_config(3)
    model = HJEPA(cfg)
    with pytest.raises(ValueError, match=f"needs at least {cfg.min_frames()}"):
        model(torch.randn(1, 3, cfg.frames_per_window, 16, 16))


def test_ema_update_matches_its_formula() -> None:
    torch.manual_seed(0)
    model = HJEPA(tiny_config(2))
    for p in model.parameters():
        if p.requires_grad:
            p.data.add_(torch.randn_like(p))
    before = [{n: p.clone() for n, p in lv.target_encoder.named_parameters()} for lv in model.levels]
    model.update_targets(0.9)
    for lv, old in zip(model.levels, before):
        online = dict(lv.encoder.named_parameters())
        for n, p in lv.target_encoder.named_parameters():
            torch.testing.assert_close(p, 0.9 * old[n] + 0.1 * online[n])


def test_momentum_schedule_at_given_steps() -> None:
    assert ema_momentum(0, 1000) == pytest.approx(0.998)
    assert ema_momentum(500, 1000) == pytest.approx(0.999)
    assert ema_momentum(1000, 1000) == pytest.approx(1.0)
    assert ema_momentum(5000, 1000) == pytest.approx(1.0)


def test_same_seed_same_result() -> None:
    def run() -> torch.Tensor:
        torch.manual_seed(123)
        cfg = tiny_config(2, latent=2)
        model = HJEPA(cfg).train()
        return model(clip_for(cfg)).loss

    assert torch.equal(run(), run())


def test_frozen_level1_has_no_target_copy_and_no_gradient() -> None:
    cfg = tiny_config(2)
    cfg.encoder.frozen = True
    model = HJEPA(cfg)
    assert model.levels[0].target_encoder is None
    out = model(clip_for(cfg))
    out.loss.backward()
    assert all(p.grad is None for p in model.levels[0].encoder.parameters())
    assert all(p.grad is not None for p in model.levels[0].predictor.parameters())


def test_future_pairs() -> None:
    assert future_pairs(3, 2).tolist() == [[0, 1], [0, 2], [1, 1]]
    assert future_pairs(2, 2, only_valid=False).tolist() == [[0, 1], [0, 2], [1, 1], [1, 2]]


def test_config_refuses_bad_values_and_unknown_keys() -> None:
    with pytest.raises(ValueError, match="frames_per_window"):
        HJEPAConfig(frames_per_window=5)
    with pytest.raises(ValueError, match="level.horizon"):
        LevelConfig(horizon=0)
    with pytest.raises(ValueError, match="unknown config key.*horizn"):
        HJEPAConfig.from_dict({"levels": [{"horizn": 2}]})
    cfg = tiny_config(3, latent=2)
    assert HJEPAConfig.from_dict(cfg.to_dict()) == cfg


def test_shared_target_trains_the_encoder_through_the_future_branch() -> None:
    """``target: shared`` (the paper's VICReg JEPA): no EMA copy, and the loss reaches the
    encoder through the encoding of the future as well as through the predictor's input."""
    import dataclasses

    cfg = tiny_config(2)
    cfg.levels[1] = dataclasses.replace(cfg.levels[1], target="shared")
    cfg = HJEPAConfig.from_dict(cfg.to_dict())
    clip = clip_for(cfg)

    def level2_encoder_grads(shared: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = HJEPA(cfg).train()
        assert model.levels[1].target_encoder is None and model.levels[0].target_encoder is not None
        model.levels[1].shared_target = shared  # False: the same level with its target detached
        torch.manual_seed(1)
        model(clip).levels[1].loss.backward()
        return [p.grad.clone() for p in model.levels[1].encoder.parameters() if p.grad is not None]

    with_branch, without = level2_encoder_grads(True), level2_encoder_grads(False)
    assert len(with_branch) == len(without) > 0
    assert any(not torch.allclose(a, b) for a, b in zip(with_branch, without))
    model = HJEPA(cfg)
    model.update_targets(0.5)  # nothing to average for a shared level; level 1 still has its EMA
    assert not any("levels.1.target_encoder" in k for k in model.state_dict())


def test_shared_target_without_vicreg_is_refused() -> None:
    cfg = tiny_config(2).to_dict()
    cfg["levels"][1]["target"] = "shared"
    cfg["vicreg_var_weight"] = 0.0
    with pytest.raises(ValueError, match=r"levels\[1\].target"):
        HJEPAConfig.from_dict(cfg)


@pytest.mark.parametrize("samples", ["steps", "tokens"])
def test_vicreg_terms_count_steps_or_tokens_as_samples(samples: str) -> None:
    from hjepa.losses import covariance_loss, variance_loss

    torch.manual_seed(0)
    cfg = tiny_config(2).to_dict()
    cfg["levels"][1]["vicreg_samples"] = samples
    model = HJEPA(HJEPAConfig.from_dict(cfg)).train()
    out = model(clip_for(cfg=HJEPAConfig.from_dict(cfg), batch=4, extra_windows=2))
    context = out.levels[1].context.detach()  # [B, S, Q, D]
    d = context.shape[-1]
    emb = context.reshape(-1, d) if samples == "tokens" else context.mean(dim=2).reshape(-1, d)
    assert float(out.levels[1].stats["vicreg_var"]) == pytest.approx(float(variance_loss(emb)), rel=1e-5)
    assert float(out.levels[1].stats["vicreg_cov"]) == pytest.approx(float(covariance_loss(emb)), rel=1e-5)
    # level 1 keeps the default
    emb1 = out.levels[0].context.detach().mean(dim=2).reshape(-1, out.levels[0].context.shape[-1])
    assert float(out.levels[0].stats["vicreg_var"]) == pytest.approx(float(variance_loss(emb1)), rel=1e-5)


def test_vicreg_samples_is_checked_and_old_configs_load_with_steps() -> None:
    cfg = tiny_config(2).to_dict()
    cfg["levels"][1]["vicreg_samples"] = "patches"
    with pytest.raises(ValueError, match="level.vicreg_samples"):
        HJEPAConfig.from_dict(cfg)
    del cfg["levels"][1]["vicreg_samples"]
    assert HJEPAConfig.from_dict(cfg).levels[1].vicreg_samples == "steps"


def test_saved_configs_from_before_anchored_queries_load_without_them() -> None:
    saved = tiny_config(2).to_dict()
    assert HJEPAConfig.from_dict(saved).levels[0].predictor.anchor_queries  # saved with the key: kept
    for level in saved["levels"]:
        del level["predictor"]["anchor_queries"]
    old = HJEPAConfig.from_dict(saved)
    assert not any(lv.predictor.anchor_queries for lv in old.levels)
    assert "anchor_queries" not in saved["levels"][0]["predictor"]  # the caller's dict is left alone


def test_mean_pooling_keeps_the_grid_layout_when_the_grid_grows() -> None:
    # An 8x8 grid (a crop twice as large) pooled to the 4x4 a level was trained on: each output
    # token is the mean of its 2x2 block, so token (r, c) still covers the same part of the frame.
    from hjepa.models.temporal import StepPooler

    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    grid = torch.stack([rows, cols], dim=-1).reshape(1, 1, 64, 2).expand(1, 4, 64, 2)  # [B, S, Q', D]
    out = StepPooler(2, stride=4, num_queries=16, kind="mean")(grid)  # [1, 1, 16, 2]
    r, c = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    expected = torch.stack([2 * r + 0.5, 2 * c + 0.5], dim=-1).reshape(1, 1, 16, 2)
    assert torch.allclose(out, expected)
    # Token counts that are not square grids fall back to pooling over the token index.
    seq = torch.arange(12.0).reshape(1, 1, 12, 1).expand(1, 4, 12, 1)
    assert torch.equal(StepPooler(1, stride=4, num_queries=4, kind="mean")(seq).flatten(), torch.tensor([1.0, 4.0, 7.0, 10.0]))


@pytest.mark.parametrize("level_input", ["target", "context"])
def test_level_input_chooses_whether_level_2_trains_level_1(level_input: str) -> None:
    # ``target``: level 2 reads level 1's EMA target (stop-gradient); ``context``: level 1's context
    # encoder, so level 2's loss reaches it (end to end).
    torch.manual_seed(0)
    cfg = tiny_config(2)
    cfg.level_input = level_input
    model = HJEPA(cfg).train()
    out = model(clip_for(cfg))
    out.levels[1].loss.backward()
    grads = [p.grad for p in model.levels[0].encoder.parameters() if p.requires_grad]
    reached = any(g is not None and g.abs().sum() > 0 for g in grads)
    assert reached == (level_input == "context")
