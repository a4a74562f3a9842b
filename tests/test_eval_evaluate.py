"""``run_evaluate`` on a briefly trained tiny model and the synthetic validation split."""

from __future__ import annotations

import json
import math
import re

import pytest
from PIL import Image

from test_eval_tiny_model import tiny_export  # noqa: F401 - session fixture (trains once)

from hjepa.eval.evaluate import format_evaluation, run_evaluate
from hjepa.viz.evaluation_plots import draw_evaluation

# Every summary key is one of these documented patterns (see run_evaluate's docstring).
KEY_PATTERNS = [
    r"ckpt|data|num_clips|batch_size|similarity|num_levels|skipped_videos|skipped_samples|wall_time_s",
    r"error_plot|retrieval_plot|summary_json",
    r"input/(resolution|num_windows|frame_step|target_fps)",
    r"level\d+/step_s",
    r"level\d+/h\d+/(horizon_s|l1|cosine|copy_l1|copy_cosine|mean_l1|copy_offset_l1|copy_ratio|mean_ratio|count)",
    r"level\d+/h\d+/(skill|best_baseline|best_baseline_l1)",
    r"control_(noise|shuffle)/level\d+/h\d+/(skill|copy_ratio|best_baseline)",
    r"level\d+/target_(slot_token|token|slot)_var",
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
    summary = run_evaluate(str(tiny_export), str(out), max_clips=64, batch_size=8, probe_steps=40, controls=True)
    return draw_evaluation(summary), out  # what `hjepa evaluate` does after scoring


def test_summary_is_flat_documented_and_finite(evaluation):
    summary, out = evaluation
    assert json.loads((out / "summary.json").read_text()) == summary
    for key, value in summary.items():
        assert any(re.fullmatch(p, key) for p in KEY_PATTERNS), f"undocumented key {key}"
        assert value is None or isinstance(value, (int, float, str)), key
        if isinstance(value, float):
            assert math.isfinite(value), key
        assert value is not None, f"{key} is null (not finite)"
    assert summary["num_clips"] == 64 and summary["skipped_videos"] == 0
    for k, h in ((1, 2), (2, 2)):
        for j in range(1, h + 1):
            assert f"level{k}/h{j}/l1" in summary and f"level{k}/h{j}/retrieval_top1" in summary
    # Seconds put the levels on one axis: level 1 steps are 0.25 s, level 2 steps 1 s (8 fps).
    assert summary["level1/h2/horizon_s"] == pytest.approx(0.5)
    assert summary["level2/h2/horizon_s"] == pytest.approx(2.0)
    for probe in ("linear", "attentive"):
        for factor in ("activity", "position"):
            assert f"level1/probe_{probe}/{factor}" in summary and f"level2/probe_{probe}/{factor}" in summary


def test_report_has_a_row_per_level_and_horizon(evaluation):
    summary, _ = evaluation
    report = format_evaluation(summary)  # what `hjepa evaluate` prints when it ends
    rows = [line.split() for line in report.splitlines() if re.match(r"\s+\d\s+\d", line)]
    assert [(r[0], r[1]) for r in rows] == [("1", "0.25s"), ("1", "0.50s"), ("2", "1.00s"), ("2", "2.00s")]
    clips_top1 = 100 * summary["level2/h2/retrieval_clips_top1"]
    assert rows[-1][2] == f"{summary['level2/h2/skill']:.3f}" and rows[-1][3] == summary["level2/h2/best_baseline"]
    assert rows[-1][4] == f"{clips_top1:.1f}" and "probe activity" in report
    assert "control, noise clips: skill L1 0.25s" in report


def test_plots_are_valid_pngs(evaluation):
    summary, _ = evaluation
    for key in ("error_plot", "retrieval_plot"):
        with Image.open(summary[key]) as im:
            im.verify()
        with Image.open(summary[key]) as im:
            assert im.format == "PNG" and im.size[0] > 800 and im.size[1] > 300


def _chance_mrr_sd(n_candidates: int) -> float:
    """Standard deviation of 1 / rank when the rank is uniform on 1..N (a guessing model)."""
    inv = [1 / r for r in range(1, n_candidates + 1)]
    mean = sum(inv) / n_candidates
    return math.sqrt(sum(x * x for x in inv) / n_candidates - mean**2)


def _beats_chance(summary: dict, key: str, where: str) -> None:
    """MRR 3 standard errors (of a guessing model's MRR over this many queries) above chance,
    and top-1 above chance."""
    queries, chance = summary[f"{key}/count"], summary[f"{key}/{where}_chance_top1"]
    se = _chance_mrr_sd(round(1 / chance)) / math.sqrt(queries)
    mrr = summary[f"{key}/{where}_mrr"]
    assert mrr >= summary[f"{key}/{where}_chance_mrr"] + 3 * se, (key, where, mrr, se)
    assert summary[f"{key}/{where}_top1"] > chance, (key, where, summary[f"{key}/{where}_top1"], chance)


# The tiny model with step targets, measured after the thresholds were set (64 validation
# clips): level 1 skill -0.12 at 0.25 s and -0.001 at 0.5 s (copy-the-present is the best
# baseline at both); level 2 +0.06 at 1 s, -0.03 at 2 s. In this world (a new view at every
# activity, 32 px, 300 steps) level 1 does not beat copying; the default checkpoint's level 1
# does (skill 0.11 / 0.14, docs/measurements.md). Expected failures, not looser thresholds.
TINY_LEVEL1_SKILL = "tiny model, step targets: level-1 skill -0.12 (0.25 s) and -0.001 (0.5 s) < 0.05; copy wins"


@pytest.mark.parametrize("j", [pytest.param(1, marks=pytest.mark.xfail(strict=True, reason=TINY_LEVEL1_SKILL)),
                               pytest.param(2, marks=pytest.mark.xfail(strict=True, reason=TINY_LEVEL1_SKILL))])
def test_level1_predicts_better_than_every_baseline(evaluation, j):
    # Skill against the best of copy-the-present, the per-(slot, token) mean target and copy +
    # slot offset, on held-out clips; threshold set before the run it judges.
    summary, _ = evaluation
    assert summary[f"level1/h{j}/best_baseline"] in ("copy", "mean", "copy_offset")
    assert summary[f"level1/h{j}/skill"] >= 0.05, (j, summary[f"level1/h{j}/skill"])


def test_skill_vanishes_where_nothing_can_be_predicted(evaluation):
    # Noise clips (i.i.d. pixels) and every clip's predictions scored against another clip's future.
    summary, _ = evaluation
    for control in ("control_noise", "control_shuffle"):
        for k in (1, 2):
            for j in (1, 2):
                skill = summary[f"{control}/level{k}/h{j}/skill"]
                assert skill <= 0.02, (control, k, j, skill)


def test_step_targets_carry_no_slot_code(evaluation):
    # Level-1 targets encode each step alone: the slot explains nothing beyond the token position.
    summary, _ = evaluation
    assert abs(summary["level1/target_slot_var"]) < 1e-3, summary["level1/target_slot_var"]
    assert summary["level2/target_slot_var"] == pytest.approx(0.0, abs=1e-9)  # one slot per window


# With step targets (64 validation clips), level 2 at 2 s among all steps: MRR 0.154 against a
# mark of 0.130 + 3 standard errors (0.05); top-1 among clips 15.6 % (chance 12.5 %).
LEVEL2_2S_RETRIEVAL = "tiny model, step targets: level-2 2 s MRR 0.154 < chance 0.130 + 3 se (0.050)"


@pytest.mark.parametrize("k,j", [(1, 1), (1, 2), (2, 1),
                                 pytest.param(2, 2, marks=pytest.mark.xfail(strict=True, reason=LEVEL2_2S_RETRIEVAL))])
def test_retrieval_beats_chance_at_every_level(evaluation, k, j):
    # Measured with step targets (300 steps, 64 validation clips), MRR among all steps: level 1
    # 0.59 / 0.31 at 0.25 / 0.5 s (copying: 0.58 / 0.31), level 2 0.43 at 1 s, 0.15 at 2 s.
    summary, _ = evaluation
    for where in ("retrieval", "retrieval_clips"):  # all steps / this clip among clips
        _beats_chance(summary, f"level{k}/h{j}", where)


@pytest.mark.xfail(strict=True, reason="tiny model, step targets: level-2 2 s MRR 0.154 vs level 1 rolled out "
                                        "0.131 among all steps (+0.05 asked)")
def test_level2_beats_level1_rolled_out_to_the_same_time(evaluation):
    # 2 s ahead: level 2 at horizon 2 vs level 1 rolled out 8 of its steps, ranked among the
    # same number of candidates at the same times; MRR at least 0.05 higher, top-1 no lower.
    # Measured with the causal targets: MRR 0.20 vs 0.13 among all steps, 0.52 vs 0.36 among
    # clips. With step targets: 0.154 vs 0.131 among all steps (top-1 among clips 15.6 % vs
    # 13.3 %): the gain is gone.
    summary, _ = evaluation
    key = "level2/h2"
    for where in ("retrieval", "retrieval_clips"):
        rolled = f"level1_rollout_{where}"
        assert summary[f"{key}/{where}_mrr"] >= summary[f"{key}/{rolled}_mrr"] + 0.05, where
        assert summary[f"{key}/{where}_top1"] >= summary[f"{key}/{rolled}_top1"], where


def test_collapse_is_measured(evaluation):
    """The statistics that would reveal a collapse are present and sane."""
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
