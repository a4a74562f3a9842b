"""The core API every task uses: encode / predict with and without gradients, rollout in seconds."""

from __future__ import annotations

import pytest
import torch

from test_model_hierarchy import clip_for, tiny_config

from hjepa.input_settings import InputSettings
from hjepa.models.hierarchy import HJEPA


def _model() -> HJEPA:
    torch.manual_seed(0)
    model = HJEPA(tiny_config()).eval()
    model.input_settings = InputSettings(frames_per_window=4, source_fps=8.0, frame_step=2)  # the model saw 4 fps
    return model


def test_encode_and_predict_carry_gradients_only_when_asked() -> None:
    model, clip = _model(), clip_for(tiny_config())
    assert not any(e.context.requires_grad for e in model.encode(clip))
    assert all(e.context.requires_grad and not e.target.requires_grad for e in model.encode(clip, grad=True))
    assert not any(p.pred.requires_grad for p in model.predict(clip))
    preds = model.predict(clip, grad=True)
    preds[0].pred.sum().backward()  # level 1: level 2 reads its stop-gradient targets by default
    assert model.levels[0].encoder.parameters().__next__().grad is not None
    with torch.no_grad():  # an outer no_grad wins: nothing is recorded
        assert not model.encode(clip, grad=True)[0].context.requires_grad


def test_encode_of_fewer_levels_is_the_prefix_of_all() -> None:
    model, clip = _model(), clip_for(tiny_config())
    one, both = model.encode(clip, num_levels=1), model.encode(clip)
    assert len(one) == 1 and torch.equal(one[0].context, both[0].context)


def test_rollout_in_seconds_takes_the_fewest_steps_that_reach_the_horizon() -> None:
    model, clip = _model(), clip_for(tiny_config())
    for level in range(model.num_levels):
        seconds = model.step_seconds(level)
        assert seconds == model.step_frames(level) / 4.0
        ahead = model.rollout(clip, 2.5 * seconds, level=level)
        assert ahead.pred.shape[1] == 3 and ahead.step_seconds == seconds
        assert torch.allclose(ahead.horizon_s, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) * seconds)
        context = model.encode(clip)[level].context
        same = model.rollout_steps(context, level, context.shape[1] - 1, 3, model.patch_grid(clip.shape))
        assert torch.equal(ahead.pred, same)
    with pytest.raises(ValueError, match="horizon_s"):
        model.rollout(clip, 0.0)


def test_a_model_without_a_frame_rate_says_so() -> None:
    model = HJEPA(tiny_config())
    with pytest.raises(ValueError, match="no training frame rate"):
        model.step_seconds(0)


def test_trainable_parts_never_include_the_target_encoder() -> None:
    model = _model()
    for k in range(model.num_levels):
        parts = model.trainable_parts(k)
        targets = {id(p) for p in model.levels[k].target_encoder.parameters()} if hasattr(
            model.levels[k], "target_encoder") else set()
        assert parts and not any(id(p) in targets for m in parts for p in m.parameters())


def test_weights_files_are_read_by_loading_not_by_the_constructor(tmp_path) -> None:
    from hjepa.loading import build_model

    source = HJEPA(tiny_config())
    path = tmp_path / "encoder.pt"
    torch.save(source.levels[0].encoder.vit.state_dict(), path)
    cfg = tiny_config()
    cfg.encoder.pretrained = str(tmp_path / "missing.pt")
    HJEPA(cfg)  # builds: the constructor does not open the file
    cfg.encoder.pretrained = str(path)
    model = build_model(cfg)
    for name, value in source.levels[0].encoder.vit.state_dict().items():
        assert torch.equal(model.levels[0].encoder.vit.state_dict()[name], value), name
        assert torch.equal(model.levels[0].target_encoder.vit.state_dict()[name], value), name  # the EMA copy too
