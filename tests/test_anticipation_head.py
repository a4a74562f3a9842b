"""The anticipation head, its losses, and the cached-feature training loop on random features."""

import pytest
import torch

from hjepa.anticipation.config import AnticipationOptimConfig, HeadConfig
from hjepa.anticipation.features import FeatureSet
from hjepa.anticipation.head import AnticipationHead, head_loss, scores_from_logits, sigmoid_focal_loss
from hjepa.anticipation.head_training import (
    HeadSpec,
    ablation_specs,
    build_heads,
    fit_heads,
    main_head_name,
    predict_heads,
)
from hjepa.anticipation.metrics import class_mean_topk_recall
from hjepa.heads import lr_factor


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny heads: one intra-op thread avoids the contention overhead on a shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("loss", ["ce", "focal"])
def test_head_shapes_and_every_parameter_gets_a_gradient(loss):
    torch.manual_seed(0)
    head = AnticipationHead([(4, 8), (2, 12)], {"verb": 5, "noun": 7, "action": 11}, dim=16, depth=2, num_heads=2)
    x = [torch.randn(3, 4, 8), torch.randn(3, 2, 12)]
    logits = head(x)
    assert {k: tuple(v.shape) for k, v in logits.items()} == {"verb": (3, 5), "noun": (3, 7), "action": (3, 11)}
    y = {"verb": torch.tensor([0, 1, 4]), "noun": torch.tensor([6, 0, 1]), "action": torch.tensor([10, 2, 3])}
    head_loss(logits, y, loss).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    probs = scores_from_logits(logits, loss)
    assert all(((0 <= p) & (p <= 1)).all() for p in probs.values())


def test_focal_loss_matches_hand_value():
    # one sample, two classes, logits 0: p = 0.5 everywhere; (1-p_t)^2 = 0.25; ce = ln 2.
    z = torch.zeros(1, 2)
    expected = 0.25 * torch.log(torch.tensor(2.0)) * (0.25 + 0.75)
    loss = sigmoid_focal_loss(z, torch.tensor([0]), gamma=2.0, alpha=0.25)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_ablation_specs_names():
    specs = ablation_specs(3)
    assert [s.name for s in specs] == ["L1", "L1+pred", "L1-2", "L1-2+pred", "L1-3", "L1-3+pred"]
    assert specs[3].sources == ("ctx1", "ctx2", "pred1", "pred2")
    assert main_head_name(2) == "L1-2+pred" and [s.name for s in ablation_specs(2, ablation=False)] == ["L1-2+pred"]


def test_lr_factor_warmup_then_cosine():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10) == pytest.approx(0.0)


def _features(n: int, g: torch.Generator) -> FeatureSet:
    """ctx1 is noise; pred1 carries the class in its mean; 8 classes; verb = action % 4."""
    action = torch.randint(0, 8, (n,), generator=g)
    means = torch.randn(8, 16, generator=torch.Generator().manual_seed(123)) * 2
    pred = means[action][:, None, :] + torch.randn(n, 3, 16, generator=g)
    ctx = torch.randn(n, 5, 16, generator=g)
    return FeatureSet(
        {"ctx1": ctx, "pred1": pred},
        {"verb": action % 4, "noun": action // 4, "action": action},
        [f"s{i}" for i in range(n)],
        torch.ones(n),
    )


def test_heads_learn_from_the_informative_tokens_only():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train, val = _features(256, g), _features(128, g)
    train.targets = {k: v.clone() for k, v in train.targets.items()}
    for v in train.targets.values():
        v[:16] = -1  # unlabelled rows are skipped
    specs = ablation_specs(1)
    heads = build_heads(specs, {"ctx1": (5, 16), "pred1": (3, 16)}, {"verb": 4, "noun": 2, "action": 8},
                        HeadConfig(dim=16, num_heads=2))
    losses = fit_heads(heads, specs, train, AnticipationOptimConfig(epochs=8, batch_size=32, lr=3e-3, weight_decay=0.0))
    assert set(losses) == {"L1", "L1+pred"}
    out = predict_heads(heads, specs, val)
    r_pred = class_mean_topk_recall(out["L1+pred"]["action"], val.targets["action"], 1)
    r_ctx = class_mean_topk_recall(out["L1"]["action"], val.targets["action"], 1)
    # chance top-1 is 1/8 = 0.125: noise stays near it, the informative set is far above
    assert r_pred > 0.9, r_pred
    assert r_ctx < 0.3, r_ctx
    assert losses["L1+pred"] < losses["L1"]


def test_input_standardisation_rescues_low_variance_features():
    # The class lives in variations ~1/250 the size of a large constant offset (a nearly collapsed level).
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n = 512
    y = torch.randint(0, 4, (n,), generator=g)
    offset = torch.randn(1, 2, 8, generator=g) * 5
    signal = torch.nn.functional.one_hot(y, 8).float()[:, None, :] + 0.3 * torch.randn(n, 2, 8, generator=g)
    x = offset + 2e-2 * signal
    feats = FeatureSet({"ctx1": x}, {"action": y}, [str(i) for i in range(n)], torch.ones(n))
    specs = [HeadSpec("std", ("ctx1",)), HeadSpec("raw", ("ctx1",))]
    heads = build_heads(specs, {"ctx1": (2, 8)}, {"action": 4}, HeadConfig(dim=16, num_heads=2))
    heads["std"].set_input_stats([x])
    assert heads["std"].in_std0.min() > 1e-3
    fit_heads(heads, specs, feats, AnticipationOptimConfig(epochs=6, batch_size=64, lr=3e-3, weight_decay=0.0))
    out = predict_heads(heads, specs, feats)
    acc = {k: (out[k]["action"].argmax(1) == y).float().mean().item() for k in ("std", "raw")}
    assert acc["std"] > 0.9 and acc["raw"] < 0.5, acc


def test_constant_inputs_are_not_amplified():
    # A token set that does not vary (float noise only) stays near zero after standardisation.
    head = AnticipationHead([(2, 4)], {"action": 3}, dim=8, num_heads=2)
    x = torch.ones(100, 2, 4) + 1e-7 * torch.randn(100, 2, 4)
    head.set_input_stats([x])
    z = (x - head.in_mean0) / head.in_std0
    assert z.abs().max() < 1e-2


def test_tokens_of_another_layout_are_refused_by_name():
    # e.g. a head saved when level 2 gave its last step only, fed all observed steps
    head = AnticipationHead([(4, 8), (2, 8)], {"action": 3}, dim=8, num_heads=2)
    with pytest.raises(ValueError, match=r"token set 1 is \(6, 8\), the head was built for \(2, 8\)"):
        head([torch.zeros(1, 4, 8), torch.zeros(1, 6, 8)])


def test_feature_set_subset_and_cat():
    g = torch.Generator().manual_seed(1)
    a, b = _features(5, g), _features(3, g)
    c = FeatureSet.cat([a, b])
    assert len(c) == 8 and c.tokens["pred1"].shape == (8, 3, 16)
    s = c.subset(torch.tensor([0, 7]))
    assert s.uids == ["s0", "s2"] and torch.equal(s.targets["action"], c.targets["action"][[0, 7]])


def test_build_heads_refuses_unknown_sources():
    specs = ablation_specs(2)
    with pytest.raises(ValueError, match="pred2"):
        shapes = {"ctx1": (2, 4), "ctx2": (2, 4), "pred1": (2, 4)}
        build_heads(specs, shapes, {"action": 3}, HeadConfig(dim=8, num_heads=2))
