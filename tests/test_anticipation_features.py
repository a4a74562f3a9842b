"""Anticipation features: which context tokens each level hands the heads, and their shapes."""

import pytest
import torch

from test_model_hierarchy import clip_for, tiny_config

from hjepa.anticipation.features import clip_features, feature_shapes
from hjepa.models.hierarchy import HJEPA


@pytest.fixture(scope="module")
def model_and_clip():
    torch.manual_seed(0)
    cfg = tiny_config(num_levels=3)
    model = HJEPA(cfg).eval()
    clip = clip_for(cfg, batch=2, extra_windows=4)
    return model, clip


def test_level1_gives_its_last_step_and_higher_levels_every_observed_step(model_and_clip):
    model, clip = model_and_clip
    with torch.no_grad():
        contexts = [e.context for e in model.encode(clip)]
        feats = clip_features(model, clip, [0.5, 1.0], [8.0, 8.0], num_levels=3)
    assert [c.shape[1] for c in contexts] == [16, 8, 4]  # steps of levels 1-3 in this clip
    assert torch.equal(feats["ctx1"], contexts[0][:, -1])
    for k in (1, 2):
        # the level's steps in time order, each step's Q tokens together: [B, S_k * Q_k, D_k]
        assert torch.equal(feats[f"ctx{k + 1}"], contexts[k].flatten(1, 2))
        assert feats[f"pred{k + 1}"].shape == contexts[k][:, -1].shape


def test_context_steps_keeps_the_last_steps(model_and_clip):
    model, clip = model_and_clip
    with torch.no_grad():
        contexts = [e.context for e in model.encode(clip)]
        feats = clip_features(model, clip, [0.5, 0.5], [8.0, 8.0], num_levels=3, context_steps=2)
    assert torch.equal(feats["ctx1"], contexts[0][:, -1])  # level 1 is not affected
    assert torch.equal(feats["ctx2"], contexts[1][:, -2:].flatten(1, 2))
    assert torch.equal(feats["ctx3"], contexts[2][:, -2:].flatten(1, 2))
    # more steps than the clip has: all of them
    with torch.no_grad():
        many = clip_features(model, clip, [0.5, 0.5], [8.0, 8.0], num_levels=3, context_steps=50)
    assert torch.equal(many["ctx3"], contexts[2].flatten(1, 2))


def test_feature_shapes_match_the_features(model_and_clip):
    model, clip = model_and_clip
    t, side = clip.shape[2], clip.shape[-1]
    for steps in (None, 1):
        shapes = feature_shapes(model, t, side, 3, context_steps=steps)
        with torch.no_grad():
            feats = clip_features(model, clip, [0.5, 0.5], [8.0, 8.0], 3, context_steps=steps)
        assert shapes == {k: (v.shape[1], v.shape[2]) for k, v in feats.items()}
