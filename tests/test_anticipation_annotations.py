"""Annotation parsing: the real EPIC-KITCHENS-100 files, the generic layout, and bad input."""

import json
import statistics
from collections import Counter
from pathlib import Path

import pytest

from hjepa.anticipation.annotations import (
    AnnotationError,
    build_vocab,
    detect_format,
    keep_known,
    parse_timestamp,
    read_annotations,
    read_class_names,
    read_video_info,
)
from hjepa.anticipation.windows import plan_windows

EPIC = Path(__file__).parents[1].parent / "shared" / "data" / "epic100"
needs_epic = pytest.mark.skipif(
    not (EPIC / "EPIC_100_validation.csv").is_file(), reason=f"real EPIC-100 annotations not found in {EPIC}"
)


@pytest.fixture(scope="module")
def val():
    return read_annotations(EPIC / "EPIC_100_validation.csv")


@pytest.fixture(scope="module")
def info():
    return read_video_info(EPIC / "EPIC_100_video_info.csv")


@needs_epic
def test_validation_counts(val):
    assert detect_format(EPIC / "EPIC_100_validation.csv") == "epic"
    assert len(val) == 9668
    assert len({s.video_id for s in val}) == 138
    assert len({s.participant_id for s in val}) == 32
    assert len({s.verb for s in val}) == 78
    assert len({s.noun for s in val}) == 211
    assert len({(s.verb, s.noun) for s in val}) == 1352
    first = val[0]
    assert (first.uid, first.video_id, first.verb, first.noun) == ("P01_11_0", "P01_11", 0, 2)
    assert first.start_s == 0.0 and first.stop_s == pytest.approx(1.89)


@needs_epic
def test_class_files_and_video_info(info):
    verbs = read_class_names(EPIC / "EPIC_100_verb_classes.csv")
    nouns = read_class_names(EPIC / "EPIC_100_noun_classes.csv")
    assert len(verbs) == 97 and len(nouns) == 300
    assert verbs[0] == "take" and nouns[2] == "plate"
    assert len(info) == 700
    assert Counter(round(v.fps, 2) for v in info.values()) == {59.94: 423, 50.0: 268, 29.97: 4, 47.95: 4, 90.0: 1}
    assert info["P01_01"].fps == pytest.approx(59.94, abs=1e-3)


@needs_epic
def test_dropped_pairs_against_rulstm_training(val):
    train = read_annotations(EPIC / "rulstm_ek100" / "training.csv")
    assert detect_format(EPIC / "rulstm_ek100" / "training.csv") == "rulstm"
    assert len(train) == 67217
    vocab = build_vocab(train, num_verbs=97, num_nouns=300)
    assert len(vocab.actions) == 3568 and vocab.num_classes == {"verb": 97, "noun": 300, "action": 3568}
    kept, dropped, report = keep_known(val, vocab)
    assert (report.kept, report.dropped_segments, report.dropped_actions) == (9296, 372, 238)
    assert len(kept) + len(dropped) == 9668
    t = vocab.targets(kept[0])
    assert vocab.actions[t["action"]] == f"{kept[0].verb},{kept[0].noun}"


@needs_epic
def test_dropped_pairs_against_official_format_train(val):
    train = read_annotations(EPIC / "EPIC_100_uda_source_train.csv")
    assert len(train) == 16115
    vocab = build_vocab(train, num_verbs=97, num_nouns=300)
    assert len(vocab.actions) == 1663
    _, _, report = keep_known(val, vocab)
    assert (report.dropped_segments, report.dropped_actions) == (977, 516)


@needs_epic
def test_timestamps_vs_frame_columns(val, info):
    # The official frame columns count 60 fps extracted frames for every EPIC-55 recording,
    # whatever the MP4's own fps: that is why times are taken from the timestamps.
    by_fps = {}
    for s in val:
        if s.start_s > 5:
            by_fps.setdefault(round(info[s.video_id].fps, 2), []).append(s)
    frames = {s.uid: s for s in read_annotations(EPIC / "EPIC_100_validation.csv", time_source="frame", frame_fps=60.0)}
    for fps, segs in by_fps.items():
        err = statistics.median(abs(frames[s.uid].start_s - s.start_s) for s in segs)
        assert err < 0.02, (fps, err)
    assert set(by_fps) == {59.94, 29.97, 47.95, 90.0}
    # The RULSTM split counts 30 fps frames and agrees with the official timestamps.
    rulstm = {s.uid: s for s in read_annotations(EPIC / "rulstm_ek100" / "validation.csv")}
    assert len(rulstm) == 9668
    assert statistics.median(abs(rulstm[s.uid].start_s - s.start_s) for s in val) < 0.034
    assert all((rulstm[s.uid].verb, rulstm[s.uid].noun) == (s.verb, s.noun) for s in val)


@needs_epic
def test_real_windows(val, info):
    plan = plan_windows(val, info, num_frames=16, tau_a=1.0, frame_step=4)
    assert plan.dropped_unobservable == 27  # actions starting in the first second
    assert plan.dropped_no_video_info == 0
    # each window ends at least tau_a before its action, in the video's own frames
    for seg, w in plan.items[:500]:
        fps = info[seg.video_id].fps
        assert w.end_frame / fps <= seg.start_s - 1.0 + 1e-9 < (w.end_frame + 1) / fps
        assert w.frames[-1] - w.frames[0] <= 15 * 4
    # clamped windows are exactly those reaching before frame 0
    assert plan.clamped == sum(1 for _, w in plan.items if w.first_frame < 0)
    assert plan.clamped > 0


def test_generic_layout(tmp_path):
    p = tmp_path / "ann.csv"
    p.write_text("video,start,stop,label\nv1,1.5,2.0,pour\nv1,3.0,4.0,stir\nv2,0.5,1.0,pour\n")
    segs = read_annotations(p)
    assert detect_format(p) == "generic"
    assert [(s.uid, s.video_id, s.start_s, s.label) for s in segs] == [
        ("v1_0", "v1", 1.5, "pour"), ("v1_1", "v1", 3.0, "stir"), ("v2_2", "v2", 0.5, "pour")]
    vocab = build_vocab(segs[:2])
    assert vocab.outputs == ("action",) and vocab.actions == ["pour", "stir"]
    val = read_annotations(p)
    extra = tmp_path / "val.csv"
    extra.write_text("video,start,stop,label,uid\nv3,1.0,2.0,chop,a\nv3,2.0,3.0,pour,b\n")
    kept, dropped, rep = keep_known(read_annotations(extra), vocab)
    assert [s.uid for s in kept] == ["b"] and rep.dropped_segments == 1 and rep.dropped_actions == 1
    assert len(val) == 3


def test_epic_minimal_columns_and_frames(tmp_path):
    p = tmp_path / "synth.csv"
    p.write_text("video_id,start_frame,stop_frame,start_timestamp,stop_timestamp,verb_class,noun_class\n"
                 "s0,60,90,00:00:02.00,00:00:03.00,1,2\n")
    (seg,) = read_annotations(p)
    assert seg.uid == "s0_0" and seg.start_s == 2.0 and seg.label == "1,2"
    info = tmp_path / "info.csv"
    info.write_text("video_id,duration,fps\ns0,10.0,30\n")
    (seg,) = read_annotations(p, time_source="frame", video_info=read_video_info(info))
    assert seg.start_s == 2.0 and seg.stop_s == 3.0


@pytest.mark.parametrize(
    "text, match",
    [
        ("video_id,start_timestamp,stop_timestamp,verb_class\nv,00:00:01.00,00:00:02.00,1\n", "cannot tell the layout"),
        ("video_id,start_timestamp,stop_timestamp,verb_class,noun_class\nv,00:00:xx,00:00:02.00,1,2\n", "line 2"),
        ("video_id,start_timestamp,stop_timestamp,verb_class,noun_class\nv,00:00:01.00,00:00:02.00,1\n",
         "line 2: 4 fields"),
        ("video,start,stop,label\nv,-1,2,x\n", "line 2: start -1.0"),
        ("", "empty"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(AnnotationError, match=match):
        read_annotations(p)


def test_missing_file_and_duplicates(tmp_path):
    with pytest.raises(AnnotationError, match="not found"):
        read_annotations(tmp_path / "nope.csv")
    p = tmp_path / "dup.csv"
    p.write_text("video,start,stop,label,uid\nv,1,2,x,a\nv,2,3,x,a\n")
    with pytest.raises(AnnotationError, match="duplicated"):
        read_annotations(p)


def test_parse_timestamp():
    assert parse_timestamp("00:01:02.50") == 62.5
    assert parse_timestamp("01:00:00.00") == 3600.0
    assert parse_timestamp("2.25") == 2.25
    with pytest.raises(ValueError):
        parse_timestamp("1::2")


def test_synthetic_anticipation_data_comes_from_the_pretraining_world(tmp_path):
    from hjepa.anticipation.synthetic import SEED_OFFSET, synthetic_annotations

    world = {"seed": 3, "num_train_videos": 999, "num_recipes": 2, "reposition_prob": 1.0, "resolution": 32,
             "frames_per_video": 24}
    files = synthetic_annotations(tmp_path, 2, 1, seed=5, world=world)
    written = json.loads((tmp_path / "grammar.json").read_text())["config"]
    # the world's grammar and look; this run's own seed and sizes
    assert written["num_recipes"] == 2 and written["reposition_prob"] == 1.0 and written["resolution"] == 32
    assert written["seed"] == SEED_OFFSET + 5 and written["num_train_videos"] == 2 and written["num_val_videos"] == 1
    assert files.train.is_file() and len(list((tmp_path / "videos").glob("*.mp4"))) == 3
    with pytest.raises(ValueError, match="warp_speed"):
        synthetic_annotations(tmp_path / "other", 2, 1, world={**world, "warp_speed": 9})


def test_reusing_a_dataset_from_another_world_is_said(tmp_path, caplog):
    from hjepa.anticipation.synthetic import synthetic_annotations

    world = {"num_recipes": 2, "resolution": 32, "frames_per_video": 24}
    synthetic_annotations(tmp_path, 2, 1, world=world)
    with caplog.at_level("WARNING", logger="hjepa.anticipation.synthetic"):
        synthetic_annotations(tmp_path, 2, 1, seed=7, world={**world, "seed": 3})  # same world, other videos
        assert not caplog.records
        synthetic_annotations(tmp_path, 2, 1, world={**world, "num_recipes": 3})
    assert len(caplog.records) == 1 and "num_recipes: 2 vs 3" in caplog.records[0].getMessage()
