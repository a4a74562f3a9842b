"""End to end on the synthetic dataset: short pretraining, then probing and fine-tuning.

One tiny H-JEPA is pretrained per session (``hjepa pretrain``'s code path, a few dozen steps)
and one small synthetic dataset is written; the tests then run ``run_anticipation`` on them.
"""

import hashlib
import json

import pytest
import torch

from hjepa.anticipation.config import AnticipationConfig, DataConfig, WindowConfig
from hjepa.anticipation.predictions import validate_challenge_json
from hjepa.anticipation.probe import FeatureSet, HeadConfig, OptimConfig, predict_heads
from hjepa.anticipation.run import load_head, run, run_anticipation

PRETRAIN_STEPS = 40


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory):
    from hjepa.cli.pretrain import main as pretrain_main

    run_dir = tmp_path_factory.mktemp("pretrain")
    summary = pretrain_main([
        "--run_dir", str(run_dir), f"--trainer.max_steps={PRETRAIN_STEPS}", "--logger.wandb=false",
        "--data.synthetic.num_train_videos=32", "--data.synthetic.num_val_videos=4", "--data.batch_size=8",
        "--trainer.limit_val_batches=1",
    ])
    return summary["checkpoint"]


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    from hjepa.data.synthetic import SyntheticConfig, write_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, SyntheticConfig(seed=1000, num_train_videos=40, num_val_videos=16))
    return root


def _hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode() + t.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def probe_run(pretrained, synthetic, tmp_path_factory):
    from hjepa.loading import load_pretrained

    out = tmp_path_factory.mktemp("probe")
    model = load_pretrained(pretrained)
    before = _hash(model)
    cfg = AnticipationConfig(
        ckpt=pretrained, out_dir=str(out), device="cpu",
        data=DataConfig(synthetic_dir=str(synthetic)),
        head=HeadConfig(dim=64, num_heads=4),
        optim=OptimConfig(epochs=25, batch_size=64, lr=2e-3, label_smoothing=0.1),
    )
    summary = run(cfg, model=model)
    return summary, before, _hash(model), model, out


def test_probe_outputs(probe_run):
    summary, _, _, _, out = probe_run
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["num_verbs"] == 6 and summary["num_nouns"] == 4 and summary["num_actions"] == 24
    # every video starts with an action at frame 0: nothing observable 1 s before it
    assert summary["train_dropped_unobservable"] == 40 and summary["val_dropped_unobservable"] == 16
    assert summary["skipped_videos"] == 0 and summary["val_evaluated"] > 60
    sub = json.loads((out / "predictions.json").read_text())
    validate_challenge_json(sub, num_verbs=6, num_nouns=4, num_actions=24)
    # predictions cover every observable validation action, also those left out of the metrics
    assert len(sub["results"]) == summary["val_segments"] - summary["val_dropped_unobservable"]
    assert (out / "ablation.md").read_text().count("| L1") == 4


def test_frozen_backbone_bitwise_unchanged(probe_run, pretrained):
    from hjepa.loading import load_pretrained

    _, before, after, model, _ = probe_run
    assert before == after
    fresh = load_pretrained(pretrained)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))


def test_head_checkpoint_reproduces_predictions(probe_run):
    summary, _, _, _, out = probe_run
    heads, specs, vocab, ckpt = load_head(out / "head.pt")
    assert ckpt["main_head"] == summary["main_head"] == "L1-2+pred"
    assert [s.name for s in specs] == ["L1", "L1+pred", "L1-2", "L1-2+pred"]
    assert len(vocab.actions) == 24
    feats = torch.load(out / "features_val.pt", weights_only=True)
    fs = FeatureSet(feats["tokens"], feats["targets"], feats["uids"], feats["tau_a"])
    logits = predict_heads(heads, specs, fs)
    sub = json.loads((out / "predictions.json").read_text())
    uid = fs.uids[0]
    best = max(sub["results"][uid]["action"].items(), key=lambda kv: kv[1])[0]
    assert best == vocab.actions[int(logits[summary["main_head"]]["action"][0].argmax())]


def test_anticipation_well_above_chance(probe_run):
    summary = probe_run[0]
    chance = summary["chance_action_recall5"]  # 5 / 24
    # Class-mean top-5 recall of the next action, 1 s ahead.
    assert summary["action_recall5"] > chance + 0.10, (summary["action_recall5"], chance)


def test_higher_level_predictions_beat_level1_only(probe_run):
    summary = probe_run[0]
    top = summary["ablation/L1-2+pred/action_recall5"]
    l1 = summary["ablation/L1/action_recall5"]
    assert top > l1 + 0.03, (top, l1)


def test_finetune_updates_only_levels_with_a_learning_rate(pretrained, synthetic, tmp_path):
    from hjepa.loading import load_pretrained

    model = load_pretrained(pretrained)
    level1 = {k: v.clone() for k, v in model.levels[0].state_dict().items()}
    level2 = {k: v.clone() for k, v in model.levels[1].state_dict().items()}
    cfg = AnticipationConfig(
        ckpt=pretrained, out_dir=str(tmp_path), mode="finetune", level_lrs=[0.0, 1e-3], device="cpu",
        cache_features=False, feature_batch_size=8,
        data=DataConfig(synthetic_dir=str(synthetic), max_train=24, max_val=12),
        window=WindowConfig(num_windows=3),
        head=HeadConfig(dim=32, num_heads=2), optim=OptimConfig(epochs=1, batch_size=8),
    )
    summary = run(cfg, model=model)
    assert all(torch.equal(v, model.levels[0].state_dict()[k]) for k, v in level1.items())
    changed = [k for k, v in level2.items() if not torch.equal(v, model.levels[1].state_dict()[k])]
    assert any(k.startswith("encoder.") for k in changed) and any(k.startswith("predictor.") for k in changed)
    # the EMA target encoder defines the prediction space and stays as pretrained
    assert not any(k.startswith("target_encoder.") for k in changed)
    assert summary["clip_frames"] == 24 and "action_recall5" in summary
    ckpt = torch.load(tmp_path / "head.pt", weights_only=True)
    assert set(ckpt["backbone_state_dict"]) == set(model.state_dict())


def test_unknown_keyword_is_refused(pretrained, tmp_path):
    with pytest.raises(TypeError):
        run_anticipation(ckpt=pretrained, out_dir=str(tmp_path), tau_a=1.0)  # belongs under window=
