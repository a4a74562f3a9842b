"""``run_evaluate`` on a briefly trained tiny model and the synthetic validation split."""

from __future__ import annotations

import json
import math
import re

import pytest
from PIL import Image

from test_eval_tiny_model import tiny_export  # noqa: F401 - session fixture (trains once)

from hjepa.eval.evaluate import run_evaluate

# Every summary key is one of these documented patterns (see run_evaluate's docstring).
KEY_PATTERNS = [
    r"ckpt|data|num_clips|batch_size|similarity|num_levels|skipped_videos|skipped_samples|wall_time_s",
    r"error_plot|retrieval_plot",
    r"level\d+/step_s",
    r"level\d+/h\d+/(horizon_s|l1|cosine|copy_l1|copy_cosine|mean_l1|copy_ratio|mean_ratio|count)",
    r"level\d+/h\d+/(copy_)?retrieval(_clips)?_(top1|mrr|chance_top1|chance_mrr)",
    r"level\d+/h\d+/level1_rollout_retrieval(_clips)?_(top1|mrr|chance_top1|chance_mrr)",
    r"level\d+/context_std_(mean|min)",
    r"level\d+/(context|target)_(eff_rank|eff_rank_ratio|step_std_mean)",
    r"level\d+/probe_(linear|attentive)/(activity|position|label)(_train)?",
    r"probe/(activity|position|label)/(chance|metric)",
]


@pytest.fixture(scope="module")
def evaluation(tiny_export, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("evaluate")
    summary = run_evaluate(str(tiny_export), str(out), max_clips=24, batch_size=8, probe_steps=40)
    return summary, out


def test_summary_is_flat_documented_and_finite(evaluation):
    summary, out = evaluation
    assert json.loads((out / "summary.json").read_text()) == summary
    for key, value in summary.items():
        assert any(re.fullmatch(p, key) for p in KEY_PATTERNS), f"undocumented key {key}"
        assert value is None or isinstance(value, (int, float, str)), key
        if isinstance(value, float):
            assert math.isfinite(value), key
        assert value is not None, f"{key} is null (not finite)"
    assert summary["num_clips"] == 24 and summary["skipped_videos"] == 0
    for k, h in ((1, 2), (2, 2)):
        for j in range(1, h + 1):
            assert f"level{k}/h{j}/l1" in summary and f"level{k}/h{j}/retrieval_top1" in summary
    # Seconds put the levels on one axis: level 1 steps are 0.25 s, level 2 steps 1 s (8 fps).
    assert summary["level1/h2/horizon_s"] == pytest.approx(0.5)
    assert summary["level2/h2/horizon_s"] == pytest.approx(2.0)
    for probe in ("linear", "attentive"):
        for factor in ("activity", "position"):
            assert f"level1/probe_{probe}/{factor}" in summary and f"level2/probe_{probe}/{factor}" in summary


def test_plots_are_valid_pngs(evaluation):
    summary, _ = evaluation
    for key in ("error_plot", "retrieval_plot"):
        with Image.open(summary[key]) as im:
            im.verify()
        with Image.open(summary[key]) as im:
            assert im.format == "PNG" and im.size[0] > 800 and im.size[1] > 300


# Measured on the 60-step tiny model (and on 100-300-step runs of the default pretrain recipe):
# every level's predictions are the same for every clip (std across clips ~1e-3 of the
# targets' 0.3 at level 1) and level 2's targets encode the step's time position only (std
# across clips ~5e-4). Ranked among the clips' steps at the true time, every level is then at
# exactly chance (top-1 1/8, MRR H_8/8 = 0.340). These tests hold the thresholds a model that
# predicts content must meet; strict xfail makes them fail loudly once it does, so the marker
# is removed then.
COLLAPSED = pytest.mark.xfail(
    strict=True,
    reason="briefly trained models predict the time position, not the clip's content (see comment)",
)


@COLLAPSED
def test_retrieval_beats_chance_at_every_level(evaluation):
    summary, _ = evaluation
    for k in (1, 2):
        for j in (1, 2):
            key = f"level{k}/h{j}"
            for where in ("retrieval", "retrieval_clips"):  # all steps / this clip among clips
                # Top-1 at least twice chance and MRR 0.05 above chance.
                assert summary[f"{key}/{where}_top1"] >= 2 * summary[f"{key}/{where}_chance_top1"], (key, where)
                assert summary[f"{key}/{where}_mrr"] >= summary[f"{key}/{where}_chance_mrr"] + 0.05, (key, where)


@COLLAPSED
def test_level2_beats_level1_rolled_out_to_the_same_time(evaluation):
    summary, _ = evaluation
    # 2 s ahead: level 2 at horizon 2 vs level 1 rolled out 8 of its steps, ranked among the
    # same number of candidates at the same times; MRR at least 0.05 higher, top-1 no lower.
    key = "level2/h2"
    for where in ("retrieval", "retrieval_clips"):
        rolled = f"level1_rollout_{where}"
        assert summary[f"{key}/{where}_mrr"] >= summary[f"{key}/{rolled}_mrr"] + 0.05, where
        assert summary[f"{key}/{where}_top1"] >= summary[f"{key}/{rolled}_top1"], where


def test_collapse_is_measured(evaluation):
    """The statistics that reveal the collapse above are present and sane."""
    summary, _ = evaluation
    for k in (1, 2):
        assert 1.0 <= summary[f"level{k}/target_eff_rank"] <= 64
        assert 0 < summary[f"level{k}/target_eff_rank_ratio"] <= 1
        assert summary[f"level{k}/context_std_mean"] >= 0
        # Same-time retrieval ranks among one candidate per clip of a batch: chance = 1 / 8.
        assert summary[f"level{k}/h1/retrieval_clips_chance_top1"] == pytest.approx(1 / 8)


def test_evaluate_refuses_bad_arguments(tiny_export, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="max_clips"):
        run_evaluate(str(tiny_export), str(tmp_path), max_clips=0)
    with pytest.raises(ValueError, match="similarity"):
        run_evaluate(str(tiny_export), str(tmp_path), similarity="dot")
    with pytest.raises(FileNotFoundError):
        run_evaluate(str(tmp_path / "nothing.ckpt"), str(tmp_path))
