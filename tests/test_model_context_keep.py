"""Level 1's context encoding part of each step (``LevelConfig.context_keep``): what it leaves out
is never seen, the rest of the step is still predicted, causality holds, and nothing changes
outside training."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hjepa.models.config import EncoderConfig, HJEPAConfig, LatentConfig, LevelConfig, PredictorConfig
from hjepa.models.hierarchy import HJEPA
from hjepa.models.level import future_pairs

PRED = PredictorConfig(embed_dim=32, depth=2, num_heads=2)
SIZE = 32  # 4 x 4 patches of 8 px: 16 tokens per step


def config(keep: float, attention: str = "causal", levels: int = 2, latent: int = 0) -> HJEPAConfig:
    lv = [LevelConfig(horizon=2, context_keep=keep, predictor=PRED, latent=LatentConfig(dim=latent))]
    if levels > 1:
        lv.append(LevelConfig(embed_dim=32, depth=1, num_heads=2, stride=2, num_queries=4, horizon=1, predictor=PRED))
    enc = EncoderConfig(name="micro", patch_size=8, temporal_attention=attention, embed_dim=32, depth=2, num_heads=2)
    return HJEPAConfig(frames_per_window=4, encoder=enc, levels=lv)


def clip_for(cfg: HJEPAConfig, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, cfg.min_frames() + cfg.frames_per_window, SIZE, SIZE, generator=g)


@pytest.mark.parametrize("attention", ["causal", "full"])
def test_kept_tokens_are_drawn_per_step_and_counted(attention: str) -> None:
    model = HJEPA(config(0.25, attention))
    enc = model.levels[0].encoder
    clip = clip_for(model.config)
    torch.manual_seed(0)
    kept = enc.draw_kept(clip.shape, 4, clip.device)  # [B * n, Tg, K]
    windows = clip.shape[0] * clip.shape[2] // model.config.frames_per_window
    assert kept.shape == (windows, 2, 4)
    assert (kept.diff(dim=-1) > 0).all() and kept.min() >= 0 and kept.max() < 16  # distinct, sorted positions
    same_over_slots = bool((kept[:, 0] == kept[:, 1]).all())
    # causal: every slot is its own step and draws apart; full: a window is one step
    assert same_over_slots == (attention == "full")
    steps, index = enc.encode_kept(clip, kept)
    s = clip.shape[2] // 2 if attention == "causal" else windows // clip.shape[0]
    assert steps.shape == (2, s, 4, 32) and index.shape == (2, s, 4)


def test_a_left_out_patch_is_never_seen() -> None:
    torch.manual_seed(0)
    model = HJEPA(config(0.25)).train()
    level = model.levels[0]
    clip = clip_for(model.config)
    kept = level.encoder.draw_kept(clip.shape, 4, clip.device)
    # A patch of step 0 (window 0, slot 0, clip 0) that the draw left out, and one it kept.
    out_pos = next(p for p in range(16) if p not in kept[0, 0].tolist())
    in_pos = int(kept[0, 0, 0])

    def with_patch_changed(pos: int) -> torch.Tensor:
        changed = clip.clone()
        r, c = divmod(pos, 4)
        changed[0, :, 0:2, 8 * r:8 * r + 8, 8 * c:8 * c + 8] += 5.0  # the tubelet of slot 0
        return changed

    base, index = level.encoder.encode_kept(clip, kept)
    pairs = future_pairs(base.shape[1], 2)
    pred = level.predict_pairs(base, pairs, (4, 4), token_index=index)
    assert pred.shape == (2, pairs.shape[0], 16, 32)  # every position of every future step is predicted
    unseen, _ = level.encoder.encode_kept(with_patch_changed(out_pos), kept)
    assert torch.equal(unseen, base)
    torch.testing.assert_close(level.predict_pairs(unseen, pairs, (4, 4), token_index=index), pred, rtol=0, atol=0)
    seen, _ = level.encoder.encode_kept(with_patch_changed(in_pos), kept)
    assert not torch.allclose(seen[0, 0], base[0, 0])  # the same change on a kept patch shows


def test_all_positions_kept_predict_as_the_whole_context() -> None:
    torch.manual_seed(0)
    model = HJEPA(config(1.0)).eval()
    level = model.levels[0]
    clip = clip_for(model.config)
    context = level.encode_context(clip)  # [B, S, 16, D]
    pairs = future_pairs(context.shape[1], 2)
    index = torch.arange(16).expand(2, context.shape[1], 16)
    torch.testing.assert_close(level.predict_pairs(context, pairs, (4, 4), token_index=index),
                               level.predict_pairs(context, pairs, (4, 4)), rtol=0, atol=0)


def test_training_with_kept_tokens_is_causal_and_trains_everything() -> None:
    torch.manual_seed(0)
    model = HJEPA(config(0.5, latent=3)).train()
    level = model.levels[0]
    clip = clip_for(model.config)
    kept = level.encoder.draw_kept(clip.shape, 8, clip.device)
    context, index = level.encoder.encode_kept(clip, kept)
    pairs = future_pairs(context.shape[1], 2)
    pred = level.predict_pairs(context, pairs, (4, 4), token_index=index)
    end = 3  # steps 0..3 are the first window's two slots and the second's two
    changed = clip.clone()
    changed[:, :, 2 * (end + 1):] = torch.randn_like(changed[:, :, 2 * (end + 1):]) * 3
    context_b, _ = level.encoder.encode_kept(changed, kept)
    pred_b = level.predict_pairs(context_b, pairs, (4, 4), token_index=index)
    early = pairs[:, 0] <= end
    assert torch.equal(context[:, : end + 1], context_b[:, : end + 1])
    assert torch.equal(pred[:, early], pred_b[:, early])
    assert not torch.equal(pred[:, ~early], pred_b[:, ~early])  # the check can fail

    out = model(clip)  # the whole training forward, latent winner-takes-all included
    assert out.levels[0].context.shape[2] == 8 and out.levels[0].target.shape[2] == 16
    assert out.levels[1].context.shape[2] == 4  # level 2 reads the whole targets
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing


def test_outside_training_every_token_is_encoded() -> None:
    torch.manual_seed(0)
    half, whole = HJEPA(config(0.5)), HJEPA(config(1.0))
    whole.load_state_dict(half.state_dict())
    clip = clip_for(half.config)
    half.eval()
    whole.eval()
    with torch.no_grad():
        a, b = half(clip), whole(clip)
    assert a.levels[0].context.shape[2] == 16
    torch.testing.assert_close(a.loss, b.loss, rtol=0, atol=0)
    torch.testing.assert_close(half.predict(clip)[0].pred, whole.predict(clip)[0].pred, rtol=0, atol=0)


def test_context_keep_is_refused_where_it_cannot_hold() -> None:
    with pytest.raises(ValueError, match="level.context_keep"):
        LevelConfig(context_keep=0.0)
    with pytest.raises(ValueError, match="level.context_keep"):
        LevelConfig(context_keep=1.5)
    cfg = config(0.5)
    with pytest.raises(ValueError, match=r"levels\[1\].context_keep"):
        dataclasses.replace(cfg, levels=[cfg.levels[0], dataclasses.replace(cfg.levels[1], context_keep=0.5)])
    with pytest.raises(ValueError, match="level_input=context"):
        dataclasses.replace(cfg, level_input="context")
    with pytest.raises(ValueError, match="frozen"):
        dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, frozen=True))
    assert HJEPAConfig.from_dict(config(1.0).to_dict()).levels[0].context_keep == 1.0
