"""Action-conditioned level 1: what the predictor reads of the actions, and when."""

from __future__ import annotations

import pytest
import torch

from hjepa.models.config import ActionConfig, HJEPAConfig, LevelConfig, PredictorConfig
from hjepa.models.hierarchy import HJEPA
from hjepa.models.level import future_pairs

F = 2  # frames per level-1 step (the micro ViT's tubelet)


def _model(actions: ActionConfig, levels: int = 1, seed: int = 0) -> HJEPA:
    torch.manual_seed(seed)
    lv1 = LevelConfig(horizon=2, predictor=PredictorConfig(embed_dim=32, depth=1, num_heads=2), actions=actions)
    lvs = [lv1] + [LevelConfig(stride=4, horizon=1, embed_dim=32, num_heads=2,
                               predictor=PredictorConfig(embed_dim=32, depth=1, num_heads=2))] * (levels - 1)
    model = HJEPA(HJEPAConfig(frames_per_window=8, levels=lvs)).eval()
    proj = model.levels[0].predictor.action_proj
    if proj is not None:  # it starts at zero (an action-free start); give it a trained-looking map
        torch.nn.init.normal_(proj.weight, std=0.2)
    return model


def _pred(model: HJEPA, clip: torch.Tensor, actions: torch.Tensor | None, pairs: torch.Tensor) -> torch.Tensor:
    level = model.levels[0]
    with torch.no_grad():
        context = level.encode_context(clip)
        steps = None if actions is None else level.step_actions(actions)
        return level.predict_pairs(context, pairs, model.patch_grid(clip.shape), step_actions=steps)


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return torch.randn(2, 3, 16, 32, 32, generator=torch.Generator().manual_seed(1))


def test_actions_start_as_the_action_free_predictor(clip: torch.Tensor) -> None:
    torch.manual_seed(0)
    cfg = HJEPAConfig(frames_per_window=8, levels=[LevelConfig(horizon=2, actions=ActionConfig(num_classes=7))])
    model = HJEPA(cfg).eval()
    pairs = future_pairs(8, 2)
    acts = torch.randint(0, 7, (2, 16))
    assert torch.equal(_pred(model, clip, acts, pairs), _pred(model, clip, None, pairs))


def test_a_prediction_reads_exactly_the_actions_from_its_present_to_its_target(clip: torch.Tensor) -> None:
    """Pair (t, j) reads the actions of frames (t+1)F-1 .. (t+j+1)F-2: changing any of them
    changes it; changing any other frame's action (before: the context shows it; after: it
    cannot have happened yet) leaves it exactly as it was."""
    model = _model(ActionConfig(num_classes=5))
    gen = torch.Generator().manual_seed(2)
    acts = torch.randint(0, 5, (2, 16), generator=gen)
    pairs = future_pairs(8, 2)
    base = _pred(model, clip, acts, pairs)
    for f in range(16):
        other = acts.clone()
        other[:, f] = (other[:, f] + 1) % 5
        moved = _pred(model, clip, other, pairs)
        for p, (t, j) in enumerate(pairs.tolist()):
            reads = (t + 1) * F - 1 <= f <= (t + j + 1) * F - 2
            diff = (moved[:, p] - base[:, p]).abs().max().item()
            if reads:
                assert diff > 1e-4, (f, t, j)
            else:
                assert diff == 0.0, (f, t, j, diff)


def test_the_order_of_actions_counts(clip: torch.Tensor) -> None:
    model = _model(ActionConfig(num_classes=5))
    acts = torch.zeros(2, 16, dtype=torch.long)
    acts[:, 1], acts[:, 2] = 1, 2  # the span of step 1: frames 1, 2
    swapped = acts.clone()
    swapped[:, 1], swapped[:, 2] = 2, 1
    pairs = torch.tensor([[0, 1]])
    assert (_pred(model, clip, acts, pairs) - _pred(model, clip, swapped, pairs)).abs().max() > 1e-4


def test_future_frames_never_reach_a_prediction_with_actions(clip: torch.Tensor) -> None:
    model = _model(ActionConfig(dim=3))
    acts = torch.randn(2, 16, 3)
    pairs = future_pairs(8, 2)
    base = _pred(model, clip, acts, pairs)
    for t in range(6):  # context ends with a later pair to compare
        later = clip.clone()
        later[:, :, (t + 1) * F :] += 5.0  # every frame after context step t
        moved = _pred(model, later, acts, pairs)
        sel = pairs[:, 0] <= t
        assert torch.allclose(moved[:, sel], base[:, sel], atol=1e-5), t
        assert (moved[:, ~sel] - base[:, ~sel]).abs().max() > 1e-3  # the check can fail


def test_training_uses_actions_and_every_part_learns(clip: torch.Tensor) -> None:
    model = _model(ActionConfig(num_classes=7), levels=2).train()
    clip24 = torch.randn(2, 3, 32, 32, 32)
    acts = torch.randint(0, 7, (2, 32))
    out = model(clip24, actions=acts)
    out.loss.backward()
    enc = model.levels[0].action_encoder
    assert enc.embed.weight.grad.abs().sum() > 0 and model.levels[0].predictor.action_proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="training needs the clip's per-frame actions"):
        model(clip24)
    with pytest.raises(ValueError, match="one per frame"):
        model(clip24, actions=acts[:, :20])


def test_rollout_with_actions_is_the_direct_prediction_then_continues(clip: torch.Tensor) -> None:
    model = _model(ActionConfig(num_classes=5))
    acts = torch.randint(0, 5, (2, 16 + 3 * F))  # the clip's frames, then three steps' worth planned
    with torch.no_grad():
        context = model.levels[0].encode_context(clip)
        grid = model.patch_grid(clip.shape)
        ahead = model.rollout_steps(context, 0, 7, 3, grid, actions=acts)
        direct = _pred(model, clip, acts, torch.tensor([[7, 1], [7, 2]]))
        other = acts.clone()
        other[:, -1] = (other[:, -1] + 1) % 5  # the last planned action leads past the third step
        same = model.rollout_steps(context, 0, 7, 3, grid, actions=other)
        other[:, 16 + 2 * F] = (other[:, 16 + 2 * F] + 1) % 5  # inside the third step's span
        changed = model.rollout_steps(context, 0, 7, 3, grid, actions=other)
    assert ahead.shape == (2, 3, 4, model.levels[0].embed_dim)  # 32 px: a 2 x 2 patch grid
    assert torch.allclose(ahead[:, :2], direct, atol=1e-6)
    assert torch.equal(same, ahead)
    assert torch.allclose(changed[:, :2], ahead[:, :2], atol=1e-6) and (changed[:, 2] - ahead[:, 2]).abs().max() > 1e-4


def test_predict_pads_the_unknown_future_and_refuses_what_does_not_fit(clip: torch.Tensor) -> None:
    model = _model(ActionConfig(num_classes=5))
    acts = torch.randint(0, 5, (2, 16))
    preds = model.predict(clip, actions=acts)
    assert preds[0].pred.shape[:3] == (2, 8, 2)
    with pytest.raises(ValueError, match="ids must lie in 0..4"):
        model.predict(clip, actions=acts + 5)
    with pytest.raises(ValueError, match="integer ids"):
        model.predict(clip, actions=acts.float())
    free = _model(ActionConfig())
    with pytest.raises(ValueError, match="takes no actions"):
        free.predict(clip, actions=acts)


def test_action_configs_round_trip() -> None:
    with pytest.raises(ValueError, match="not both"):
        ActionConfig(num_classes=3, dim=2)
    saved = HJEPAConfig(levels=[LevelConfig(actions=ActionConfig(num_classes=7)), LevelConfig()]).to_dict()
    assert HJEPAConfig.from_dict(saved).levels[0].actions.num_classes == 7


def _two_level(seed: int = 0) -> HJEPA:
    torch.manual_seed(seed)
    pred = PredictorConfig(embed_dim=32, depth=1, num_heads=2)
    lv1 = LevelConfig(horizon=2, predictor=pred, actions=ActionConfig(num_classes=5))
    lv2 = LevelConfig(stride=4, horizon=2, embed_dim=32, num_heads=2, predictor=pred,
                      actions=ActionConfig(num_classes=5, macro_dim=4))
    model = HJEPA(HJEPAConfig(frames_per_window=8, levels=[lv1, lv2])).eval()
    for level in model.levels:
        torch.nn.init.normal_(level.predictor.action_proj.weight, std=0.2)
    return model


def test_level_two_reads_its_steps_actions_as_a_macro_action() -> None:
    """Level 2 (8 frames a step) reads, for pair (t, j), the actions of frames 8(t+1)-1 ..
    8(t+j+1)-2 through a macro-action in [-1, 1]^4, and no other frame's."""
    model = _two_level()
    clip = torch.randn(1, 3, 32, 32, 32, generator=torch.Generator().manual_seed(3))
    acts = torch.randint(0, 5, (1, 32), generator=torch.Generator().manual_seed(4))
    macro = model.levels[1].step_actions(acts)
    assert macro.shape == (1, 4, 4) and macro.abs().max() < 1
    with torch.no_grad():
        base = model.predict(clip, actions=acts)[1]
        for f in range(32):  # every frame: the span boundaries (7, 15, 23, 31) included
            other = acts.clone()
            other[:, f] = (other[:, f] + 1) % 5
            moved = model.predict(clip, actions=other)[1]
            for t in range(4):
                for j in range(1, 3):
                    if t + j > 3:
                        continue
                    diff = (moved.pred[:, t, j - 1] - base.pred[:, t, j - 1]).abs().max().item()
                    reads = 8 * (t + 1) - 1 <= f <= 8 * (t + j + 1) - 2
                    assert (diff > 1e-5) if reads else (diff < 1e-6), (f, t, j, diff)


def test_macro_actions_train_and_are_refused_where_they_do_not_fit() -> None:
    model = _two_level().train()
    out = model(torch.randn(2, 3, 32, 32, 32), actions=torch.randint(0, 5, (2, 32)))
    out.loss.backward()
    assert model.levels[1].predictor.action_proj.weight.grad.abs().sum() > 0
    pred = PredictorConfig(embed_dim=32, depth=1, num_heads=2)
    with pytest.raises(ValueError, match="macro_dim > 0"):
        HJEPAConfig(levels=[LevelConfig(actions=ActionConfig(num_classes=5)),
                            LevelConfig(actions=ActionConfig(num_classes=5), predictor=pred)])
    with pytest.raises(ValueError, match="same actions as level 1"):
        HJEPAConfig(levels=[LevelConfig(actions=ActionConfig(num_classes=5)),
                            LevelConfig(actions=ActionConfig(num_classes=6, macro_dim=4), predictor=pred)])
    with pytest.raises(ValueError, match=r"levels\[0\].actions.macro_dim"):
        HJEPAConfig(levels=[LevelConfig(actions=ActionConfig(num_classes=5, macro_dim=2))])


def test_a_video_pretrained_model_is_fine_tuned_with_actions_from_its_own_predictions(clip, tmp_path) -> None:
    """HJEPAModule(init_from=...): every video weight copied, the action inputs fresh, so the
    fine-tuning starts at the video model's predictions whatever the actions; other mismatches refused."""
    from dataclasses import replace

    from hjepa.export import export_model
    from hjepa.train.module import HJEPAModule

    video = _model(ActionConfig(), levels=2, seed=3)
    export_model(video, {"model_config": video.config.to_dict()}, tmp_path / "video")
    with_actions = replace(video.config, levels=[
        replace(lv, actions=ActionConfig(num_classes=7, macro_dim=3 if i else 0))
        for i, lv in enumerate(video.config.levels)])
    module = HJEPAModule(with_actions, init_from=str(tmp_path / "video"))
    model = module.model.eval()
    source = video.state_dict()
    new = sorted(set(model.state_dict()) - set(source))
    assert new and all("action_encoder" in k or "action_proj" in k for k in new)
    for name, value in model.state_dict().items():
        if "action_proj" in name:
            assert not value.any(), name  # the action inputs' fresh start: no effect yet
        elif name in source:
            assert torch.equal(value, source[name]), name
    pairs = torch.tensor([[5, 1], [5, 2]])
    acts = torch.randint(0, 7, (2, 16))
    assert torch.allclose(_pred(model, clip, acts, pairs), _pred(video, clip, None, pairs), atol=1e-6)
    for changed in (replace(with_actions.levels[0], horizon=3), replace(with_actions.levels[0], time_encoding="absolute")):
        other = replace(with_actions, levels=[changed, with_actions.levels[1]])  # the second: weights of equal shapes
        with pytest.raises(ValueError, match="init_from .*another architecture"):
            HJEPAModule(other, init_from=str(tmp_path / "video"))
    HJEPAModule(replace(with_actions, vicreg_var_weight=2.0), init_from=str(tmp_path / "video"))  # training settings may change
