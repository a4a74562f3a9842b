"""Class-mean top-5 recall, top-k accuracy and the challenge JSON."""

import json

import pytest
import torch

from hjepa.anticipation.metrics import anticipation_metrics, chance_recall, class_mean_topk_recall, topk_accuracy
from hjepa.anticipation.predictions import (
    build_challenge_json,
    scores_from_json,
    validate_challenge_json,
    write_challenge_json,
)


def test_hand_computed_recall_and_accuracy():
    # 3 classes; class 0 has 3 samples (1 hit), classes 1 and 2 one each (both hit) at k=1.
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.0, 1.0, 0.0], [0.1, 0.2, 0.7]])
    labels = torch.tensor([0, 0, 0, 1, 2])
    assert topk_accuracy(scores, labels, 1) == pytest.approx(3 / 5)
    assert class_mean_topk_recall(scores, labels, 1) == pytest.approx((1 / 3 + 1 + 1) / 3)
    # k=2: sample 1 and 2 rank class 0 second -> all hits
    assert class_mean_topk_recall(scores, labels, 2) == pytest.approx(1.0)
    # k larger than the class count is all hits
    assert topk_accuracy(scores, labels, 5) == 1.0


def test_recall_ignores_absent_classes_and_weighs_classes_equally():
    # 10 classes, only 0 and 7 in the ground truth: 90 samples of class 0 all right, 10 of class 7 all wrong.
    scores = torch.zeros(100, 10)
    scores[:, 0] = 1.0
    labels = torch.tensor([0] * 90 + [7] * 10)
    assert class_mean_topk_recall(scores, labels, 1) == pytest.approx(0.5)
    assert topk_accuracy(scores, labels, 1) == pytest.approx(0.9)


def test_random_scores_are_near_chance():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(20000, 20, generator=g)
    labels = torch.randint(0, 20, (20000,), generator=g)
    assert class_mean_topk_recall(scores, labels, 5) == pytest.approx(chance_recall(20), abs=0.02)


def test_flat_metric_names():
    s = {"verb": torch.eye(4), "action": torch.eye(4)}
    y = {"verb": torch.arange(4), "action": torch.tensor([1, 0, 2, 3])}
    m = anticipation_metrics(s, y, prefix="val/")
    assert set(m) == {f"val/{o}_{k}" for o in ("verb", "action") for k in ("recall5", "top1", "top5")}
    assert m["val/verb_top1"] == 1.0 and m["val/action_top1"] == 0.5


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        topk_accuracy(torch.zeros(3), torch.zeros(3, dtype=torch.long))


def test_challenge_json_roundtrip(tmp_path):
    g = torch.Generator().manual_seed(0)
    n, nv, nn_, na = 6, 97, 300, 150
    probs = {
        "verb": torch.softmax(torch.randn(n, nv, generator=g), -1),
        "noun": torch.softmax(torch.randn(n, nn_, generator=g), -1),
        "action": torch.softmax(torch.randn(n, na, generator=g), -1),
    }
    names = [f"{i % nv},{(7 * i) % nn_}" for i in range(na)]
    uids = [f"P01_11_{i}" for i in range(n)]
    sub = build_challenge_json(uids, probs, names, sls=(3, 3, 3), top_actions=100)
    path = write_challenge_json(tmp_path / "pred.json", sub)
    back = json.loads(path.read_text())
    assert back["version"] == "0.2" and back["challenge"] == "action_anticipation"
    assert (back["sls_pt"], back["sls_tl"], back["sls_td"]) == (3, 3, 3)
    validate_challenge_json(back, nv, nn_, 100)
    verbs = scores_from_json(back, uids, "verb", nv)
    assert torch.equal(verbs.topk(5).indices, probs["verb"].topk(5).indices)
    best = max(back["results"]["P01_11_2"]["action"].items(), key=lambda kv: kv[1])[0]
    assert best == names[probs["action"][2].argmax()]
    back["results"]["P01_11_0"]["action"].popitem()
    with pytest.raises(ValueError, match="99 action scores"):
        validate_challenge_json(back, nv, nn_, 100)
    with pytest.raises(ValueError, match="SLS"):
        build_challenge_json(uids, probs, names, sls=(6, 0, 0))


def test_label_the_scores_cannot_name_is_a_miss():
    # label 3 with 3 score columns: an action never seen in training; a class of recall 0
    scores = torch.eye(3)[[0, 1, 2]]
    labels = torch.tensor([0, 1, 3])
    assert topk_accuracy(scores, labels, 5) == pytest.approx(2 / 3)
    assert class_mean_topk_recall(scores, labels, 5) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="class ids >= 0"):
        topk_accuracy(scores, torch.tensor([0, 1, -1]), 1)
