"""End to end on the synthetic dataset: short pretraining, then probing and fine-tuning.

The backbone is the tests' tiny H-JEPA (``test_eval_tiny_model``: 300 steps on the synthetic
world with new views, trained once per session and shared with the evaluation tests). The
anticipation data are written from the same world with another seed: 256 training videos
(about 2200 actions: with 40-64 videos the frozen-feature heads mostly memorised) and 128
validation videos, split by video in two: the first 64 (``syn_00256``-``syn_00319``) are the
head-selection split, the last 64 (``syn_00320``-``syn_00383``) the test split, on which the
higher level's gain is judged. In this world the activity running 1 s before an action nearly fixes the
action (a head fed the true running activity scores recall@5 1.0), so top-5 anticipation is
recognising the running activity; top-1 also needs the activity before it, which only level 2's
observed steps hold.
"""

import dataclasses
import hashlib
import json
import statistics

import pytest
import torch

# The whole module trains a backbone, writes 384 videos and trains several heads: minutes.
pytestmark = pytest.mark.slow

from test_eval_tiny_model import RESOLUTION, WORLD, tiny_export  # noqa: F401 - session fixture (trains once)

from hjepa.anticipation.annotations import read_annotations
from hjepa.anticipation.config import AnticipationConfig, AnticipationOptimConfig, DataConfig, HeadConfig, WindowConfig
from hjepa.anticipation.features import FeatureSet
from hjepa.anticipation.head import scores_from_logits
from hjepa.anticipation.predictions import validate_challenge_json
from hjepa.anticipation.head_training import (
    HeadSpec,
    build_heads,
    fit_heads,
    predict_heads,
    set_input_stats,
)
from hjepa.anticipation.protocol import SplitEvaluation, protocol_sets, training_prior
from hjepa.anticipation.run import load_head, run, run_anticipation
from hjepa.cli.anticipate import format_anticipation

TRAIN_VIDEOS, VAL_VIDEOS = 256, 128
SELECT_VIDEOS = 64  # validation videos 0-63: head selection; 64-127: test
# Features are read at 64 px from 3-window clips, not at the 32 px / 4 windows the backbone was
# pretrained with (the run's default): at 32 px an object is one 8-px patch and the heads reached
# recall@5 0.42-0.57 (64-256 training videos); read at 64 px it spans four patches and they
# reach 0.95-0.99.
WINDOW = WindowConfig(crop_size=64, num_windows=3)
# The head settings every head of the run gets. They were picked in earlier revisions on the
# validation videos syn_00256-syn_00319 (then the whole validation split, now the head-selection
# split); weight decay is chosen again below, per head, on the head-selection split.
HEAD = HeadConfig(dim=64, num_heads=4, dropout=0.2)
OPTIM = AnticipationOptimConfig(epochs=40, batch_size=64, lr=2e-3, weight_decay=0.2, label_smoothing=0.1)


@pytest.fixture(scope="session")
def pretrained(tiny_export):  # noqa: F811
    return str(tiny_export)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    from hjepa.data.synthetic import SyntheticConfig, write_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, SyntheticConfig(seed=1000, num_train_videos=TRAIN_VIDEOS, num_val_videos=VAL_VIDEOS,
                                                  resolution=RESOLUTION, **WORLD))
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
        ckpt=pretrained, out_dir=str(out), device="cpu", cpu_threads=2,
        data=DataConfig(synthetic_dir=str(synthetic)), window=WINDOW, head=HEAD, optim=OPTIM,
    )
    summary = run(cfg, model=model)
    return summary, before, _hash(model), model, out


def test_probe_outputs(probe_run, synthetic):
    summary, _, _, _, out = probe_run
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["num_verbs"] == 6 and summary["num_nouns"] == 4
    assert 10 <= summary["num_actions"] <= 24  # the (verb, noun) pairs the 4 recipes use
    # every video starts with an action at frame 0: nothing observable 1 s before it; such
    # segments are scored by the training prior, as every validation segment is scored
    assert summary["train_dropped_unobservable"] == TRAIN_VIDEOS and summary["val_dropped_unobservable"] == VAL_VIDEOS
    assert summary["val_prior_fallback"] == VAL_VIDEOS and summary["val_evaluated"] == summary["val_segments"] > 800
    assert summary["val_scored_by_head"] == summary["val_segments"] - VAL_VIDEOS
    assert summary["skipped_videos"] == 0
    sub = json.loads((out / "predictions.json").read_text())
    # the JSON holds every narration id of the validation file, as the challenge's validator asks
    uids = [s.uid for s in read_annotations(synthetic / "annotations_validation.csv")]
    validate_challenge_json(sub, num_verbs=6, num_nouns=4, num_actions=summary["num_actions"], expected_uids=uids)
    # one participant in the synthetic data: nobody is unseen, so no unseen subset is reported
    assert summary["val_unseen_participant_segments"] == 0 and "action_recall5/unseen" not in summary
    assert {f"{o}_recall5/overall" for o in ("verb", "noun", "action")} <= set(summary)
    assert "action_recall5/tail" in summary and summary["tail_verbs"] >= 1
    assert summary["action_recall5/overall"] == summary["action_recall5"]
    assert (out / "ablation.md").read_text().count("| L1") == 4
    report = format_anticipation(summary)  # what `hjepa anticipate` prints when it ends
    assert report.count("| L1") == 4 and str(out / "head.pt") in report


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
    assert len(vocab.actions) == summary["num_actions"]
    feats = torch.load(out / "features_val.pt", weights_only=True)
    fs = FeatureSet(feats["tokens"], feats["targets"], feats["uids"], feats["tau_a"])
    logits = predict_heads(heads, specs, fs)
    sub = json.loads((out / "predictions.json").read_text())
    uid = fs.uids[0]
    best = max(sub["results"][uid]["action"].items(), key=lambda kv: kv[1])[0]
    assert best == vocab.actions[int(logits[summary["main_head"]]["action"][0].argmax())]


def test_anticipation_well_above_chance(probe_run):
    summary = probe_run[0]
    baseline = max(summary["chance_action_recall5"], summary["prior_action_recall5"])
    # Class-mean top-5 recall of the next action, 1 s ahead, by the main head (levels 1-2,
    # context and predictions), every validation segment scored (the 128 with nothing
    # observable by the training prior). Measured: 0.90 against chance and prior 0.31.
    assert summary["action_recall5"] > baseline + 0.15, (summary["action_recall5"], baseline)


# The gain of the higher level: a lookup table of the training actions reaches 0.68 class-mean
# top-1 from the true running activity and 0.96 from the running and the previous one, and the
# previous activity lies before level 1's last window, in level 2's observed steps (level 2's
# context as the heads read it: every observed level-2 step, the context its predictor reads).
# Recall@5 is at its ceiling for every head here (level 1: 0.99-1.00 on the actions it sees),
# where it cannot show a gain, so the gain is judged on top-1 and recall@5 must stay within
# 0.03 of level 1's.
#
# The protocol, fixed before the run it judges: heads L1 (level 1's context) and L1-2+pred
# (levels 1-2, context and predictions) train on the training videos; each head's weight decay
# is chosen, seed 0, among WEIGHT_DECAYS by its own action top-1 on the head-selection split
# (the other settings are the run's, picked earlier on that split); with its choice each head
# trains with head seeds 0, 1, 2, and the test split judges the mean over the seeds, every
# test segment scored (those with nothing observable by the training prior, the same for both
# heads). Thresholds (set before the run, in the spirit of the 0.05):
GAIN_TOP1 = 0.05  # mean top-1 of L1-2+pred minus mean top-1 of L1, test split
RECALL5_SLACK = 0.03  # mean recall@5 of L1-2+pred may trail L1's by at most this
WEIGHT_DECAYS = (0.2, 0.05)  # 0.2: the run's (its seed-0 heads are reused); 0.05: the earlier default
HEAD_SEEDS = (0, 1, 2)
GAIN_HEADS = {"L1": ("ctx1",), "L1-2+pred": ("ctx1", "ctx2", "pred1", "pred2")}
# Measured after the thresholds were set (test split: 609 segments, 64 of them by the prior),
# on the backbone with step targets: weight decay chosen on the selection split: L1 0.2 (top-1
# 0.590 vs 0.576 at 0.05), L1-2+pred 0.05 (0.589 vs 0.566). Action top-1, L1-2+pred vs L1, head
# seeds 0 / 1 / 2: 0.596 vs 0.576, 0.567 vs 0.576, 0.589 vs 0.555; mean gain +0.015 against
# the 0.05 asked. Recall@5 0.909 / 0.904 / 0.908 vs 0.922 / 0.922 / 0.921 (within the slack).
# Training prior on the test split: action top-1 0.094, recall@5 0.312 (chance 5/16 = 0.312).
# The gain is below the threshold, so the test is an expected failure, not a looser threshold.
# It is not strict: on CI's machine the same test passed (gain above 0.05, recall@5 within the
# slack). The backbone's 300 steps and the heads follow a different float path on another CPU,
# and the gain sits at the threshold within that spread: the claim is not established either way.
MEASURED = ("mean action top-1 gain of L1-2+pred over L1 on the test split, head seeds 0-2: +0.015 "
            "(0.596/0.576, 0.567/0.576, 0.589/0.555) < 0.05; recall@5 0.907 vs 0.922")


def _split_by_video(feats: FeatureSet, segments) -> tuple[list, list]:
    """(selection, test) segments: validation videos in order, the first SELECT_VIDEOS for selection."""
    videos = sorted({s.video_id for s in segments})
    assert len(videos) == VAL_VIDEOS
    select = set(videos[:SELECT_VIDEOS])
    return [s for s in segments if s.video_id in select], [s for s in segments if s.video_id not in select]


@pytest.fixture(scope="session")
def gain_protocol(probe_run, synthetic):
    from hjepa.anticipation.run import load_head

    out = probe_run[4]
    load = lambda split: FeatureSet(*(lambda d: (d["tokens"], d["targets"], d["uids"], d["tau_a"]))(  # noqa: E731
        torch.load(out / f"features_{split}.pt", weights_only=True)))
    train, val = load("train"), load("val")
    heads_run, specs_run, vocab, _ = load_head(out / "head.pt")
    train_segs = read_annotations(synthetic / "annotations_train.csv")
    val_segs = read_annotations(synthetic / "annotations_validation.csv")
    sets, prior = protocol_sets(train_segs, val_segs), training_prior(train_segs, vocab)
    select_segs, test_segs = _split_by_video(val, val_segs)
    splits = {name: SplitEvaluation(segs, vocab, sets, prior) for name, segs in (("select", select_segs),
                                                                                 ("test", test_segs))}
    members = {name: set(ev.uids) for name, ev in splits.items()}
    rows = {name: val.subset(torch.tensor([i for i, u in enumerate(val.uids) if u in members[name]]))
            for name in splits}
    shapes = {k: (int(v.shape[1]), int(v.shape[2])) for k, v in train.tokens.items()}

    def metrics(heads, specs, split):
        logits = predict_heads(heads, specs, rows[split])
        probs = {sp.name: scores_from_logits(logits[sp.name], OPTIM.loss) for sp in specs}
        return {name: splits[split].metrics(splits[split].scores(p, rows[split].uids)[0]) for name, p in probs.items()}

    def train_heads(specs, weight_decay, seed):
        torch.manual_seed(seed)
        heads = build_heads(specs, shapes, vocab.num_classes, HEAD)
        set_input_stats(heads, specs, train.subset(train.labelled()).tokens)
        fit_heads(heads, specs, train, dataclasses.replace(OPTIM, weight_decay=weight_decay), seed=seed)
        return heads

    specs = [HeadSpec(name, src) for name, src in GAIN_HEADS.items()]
    assert all(sp in specs_run for sp in specs) and OPTIM.weight_decay == WEIGHT_DECAYS[0]
    trained = {(WEIGHT_DECAYS[0], 0): heads_run}  # the run's heads: seed 0, the run's settings
    for wd in WEIGHT_DECAYS[1:]:
        trained[(wd, 0)] = train_heads(specs, wd, 0)
    select_top1 = {(wd, sp.name): metrics(trained[(wd, 0)], [sp], "select")[sp.name]["action_top1"]
                   for wd in WEIGHT_DECAYS for sp in specs}
    chosen = {sp.name: max(WEIGHT_DECAYS, key=lambda wd: select_top1[(wd, sp.name)]) for sp in specs}
    test = {sp.name: [] for sp in specs}
    for seed in HEAD_SEEDS:
        for sp in specs:
            key = (chosen[sp.name], seed)
            heads = trained[key] if key in trained else train_heads([sp], chosen[sp.name], seed)
            test[sp.name].append(metrics(heads, [sp], "test")[sp.name])
    prior_test = splits["test"].metrics(splits["test"].prior_scores())
    result = {"chosen_weight_decay": chosen, "select_top1": {f"{k[1]}@wd{k[0]}": v for k, v in select_top1.items()},
              "test": test, "prior_test": prior_test, "test_segments": len(test_segs),
              "test_prior_fallback": len(test_segs) - len(rows["test"])}
    (out / "gain_protocol.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


@pytest.mark.xfail(strict=False, reason=MEASURED)
def test_higher_level_predictions_beat_level1_only(gain_protocol):
    test = gain_protocol["test"]
    mean = lambda head, key: statistics.mean(m[key] for m in test[head])  # noqa: E731
    gain = mean("L1-2+pred", "action_top1") - mean("L1", "action_top1")
    per_seed = [(round(a["action_top1"], 3), round(b["action_top1"], 3))
                for a, b in zip(test["L1-2+pred"], test["L1"])]
    assert gain > GAIN_TOP1, (gain, per_seed, gain_protocol["chosen_weight_decay"])
    r5, r5_l1 = mean("L1-2+pred", "action_recall5"), mean("L1", "action_recall5")
    assert r5 >= r5_l1 - RECALL5_SLACK, (r5, r5_l1)


def test_recall_is_computed_against_its_baselines(probe_run):
    summary = probe_run[0]
    n = summary["num_actions"]
    assert summary["chance_action_recall5"] == pytest.approx(5 / n)
    assert summary["chance_action_recall5"] <= summary["prior_action_recall5"] <= 1.0
    for head in ("L1", "L1+pred", "L1-2", "L1-2+pred"):
        r5, top5 = summary[f"ablation/{head}/action_recall5"], summary[f"ablation/{head}/action_top5"]
        assert 0.0 <= summary[f"ablation/{head}/action_top1"] <= top5 <= 1.0 and 0.0 <= r5 <= 1.0


def test_finetune_updates_only_levels_with_a_learning_rate(pretrained, synthetic, tmp_path):
    from hjepa.loading import load_pretrained

    model = load_pretrained(pretrained)
    level1 = {k: v.clone() for k, v in model.levels[0].state_dict().items()}
    level2 = {k: v.clone() for k, v in model.levels[1].state_dict().items()}
    cfg = AnticipationConfig(
        ckpt=pretrained, out_dir=str(tmp_path), mode="finetune", level_lrs=[0.0, 1e-3], device="cpu", cpu_threads=1,
        cache_features=False, feature_batch_size=8,
        data=DataConfig(synthetic_dir=str(synthetic), max_train=24, max_val=12),
        window=WindowConfig(num_windows=3),
        head=HeadConfig(dim=32, num_heads=2), optim=AnticipationOptimConfig(epochs=1, batch_size=8),
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


def test_generic_labels_and_fps_from_the_video_files(pretrained, synthetic, tmp_path):
    # The generic layout (video, start, stop, label) with no video-info table: fps from each file.
    from hjepa.anticipation.annotations import read_annotations

    for split, name in (("train", "train"), ("validation", "val")):
        rows = read_annotations(synthetic / f"annotations_{split}.csv")
        lines = ["video,start,stop,label"] + [f"{s.video_id},{s.start_s},{s.stop_s},verb{s.verb}" for s in rows]
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
    summary = run_anticipation(
        ckpt=pretrained, out_dir=str(tmp_path / "run"), device="cpu", cpu_threads=1, ablation=False,
        data=DataConfig(train=str(tmp_path / "train.csv"), val=str(tmp_path / "val.csv"), video_dir=str(synthetic),
                        video_pattern="videos/{video_id}.mp4", max_train=80, max_val=40),
        window=WindowConfig(num_windows=3), head=HeadConfig(dim=32, num_heads=2),
        optim=AnticipationOptimConfig(epochs=2),
    )
    assert summary["num_actions"] == 6 and summary["main_head"] == "L1-2+pred"
    assert "action_recall5" in summary and "verb_recall5" not in summary
    assert summary["sample_fps"] == pytest.approx(8.0) and summary["skipped_videos"] == 0
    sub = json.loads((tmp_path / "run" / "predictions.json").read_text())
    entry = next(iter(sub["results"].values()))
    assert set(entry) == {"action"} and set(entry["action"]) == {f"verb{v}" for v in range(6)}


def test_missing_videos_are_skipped_and_counted(pretrained, synthetic, tmp_path):
    from hjepa.anticipation.annotations import read_annotations

    rows = read_annotations(synthetic / "annotations_train.csv")
    lines = ["video,start,stop,label"] + [f"{s.video_id},{s.start_s},{s.stop_s},verb{s.verb}" for s in rows[:40]]
    lines += ["no_such_video,2.0,3.0,verb0"]
    (tmp_path / "ann.csv").write_text("\n".join(lines) + "\n")
    summary = run_anticipation(
        ckpt=pretrained, out_dir=str(tmp_path / "run"), device="cpu", cpu_threads=1, ablation=False,
        data=DataConfig(train=str(tmp_path / "ann.csv"), val=str(tmp_path / "ann.csv"), video_dir=str(synthetic),
                        video_pattern="videos/{video_id}.mp4"),
        window=WindowConfig(num_windows=3), head=HeadConfig(dim=32, num_heads=2),
        optim=AnticipationOptimConfig(epochs=1),
    )
    assert summary["skipped_videos"] == 1 and summary["dropped_no_video"] == 2  # one row in each split
    assert "no_such_video" in summary["skipped_files"][0]


def test_feature_probe_tool_reads_what_level1_sees(probe_run, synthetic, tmp_path):
    # docs/anticipation_feature_probe.py on this run's cached features: level 1's context
    # names the running action (the one it watches) far above the majority class.
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "anticipation_feature_probe.py"
    spec = importlib.util.spec_from_file_location("anticipation_feature_probe", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = probe_run[4]
    result = tool.probe(out, synthetic, [("ctx1",)], epochs=10, dim=32, seed=0)
    running = result["running"]
    assert running["ctx1"] > running["majority"] + 0.3, running
    assert set(result["effective_rank"]) == {"ctx1", "pred1", "ctx2", "pred2"}
    # Level 1's context also holds where the objects are (measured R^2 0.80-0.92 on such runs).
    r2 = tool.position_r2(out, synthetic, ["ctx1"])
    assert r2 is not None and r2["ctx1"] > 0.5, r2
    assert tool.position_r2(out, out, ["ctx1"]) is None  # no synthetic frame labels there: nothing to score
    # frame labels of another dataset: refused by name, not scored on nothing
    for name in ("video_info.csv", "annotations_train.csv", "annotations_validation.csv"):
        (tmp_path / name).write_text((synthetic / name).read_text())
    for split in ("train", "validation"):
        (tmp_path / f"frame_labels_{split}.csv").write_text("video_id,frame,x0,y0\nelsewhere,0,0.1,0.2\n")
    with pytest.raises(SystemExit, match="same dataset"):
        tool.position_r2(out, tmp_path, ["ctx1"])
