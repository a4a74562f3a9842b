"""The EK-100 anticipation protocol: every segment scored, unseen-participant and tail subsets.

Hand-computed cases, a brute-force reading of the challenge's rules applied to our own JSON,
and the real annotation files (skipped when ``../shared/data/epic100`` is absent).
"""

from collections import Counter
from pathlib import Path

import pytest
import torch

from hjepa.anticipation.annotations import AnnotationError, Segment, build_vocab, read_annotations
from hjepa.anticipation.predictions import build_challenge_json, validate_challenge_json
from hjepa.anticipation.protocol import (
    SplitEvaluation,
    evaluation_labels,
    fill_with_prior,
    protocol_sets,
    read_id_list,
    subset_masks,
    tail_classes,
    training_prior,
    unseen_participants,
)

EPIC = Path(__file__).parents[1].parent / "shared" / "data" / "epic100"


def seg(uid, verb, noun, who="P01"):
    return Segment(uid, f"{who}_01", 2.0, 3.0, verb, noun, f"{verb},{noun}", who)


def test_tail_is_the_rarest_fifth_of_the_instances():
    # 100 instances: the budget is 20. Rarest first: c (5), d (5), e (10) -> 20 fits; b (30) would not.
    counts = {"a": 50, "b": 30, "e": 10, "c": 5, "d": 5}
    assert tail_classes(counts) == {"c", "d", "e"}
    # ties are taken in key order, and a class that would cross the budget stops the walk
    assert tail_classes({"x": 10, "y": 10, "z": 80}, 0.15) == {"x"}
    assert tail_classes({"x": 0, "y": 100}) == set()  # an absent class is never tail
    with pytest.raises(ValueError, match="fraction"):
        tail_classes(counts, 1.5)


def test_unseen_pair_is_an_action_miss_and_its_own_class():
    train = [seg("t0", 0, 0), seg("t1", 1, 1)]
    vocab = build_vocab(train, 2, 2)  # actions "0,0", "1,1"
    val = [seg("v0", 0, 0), seg("v1", 0, 1), seg("v2", 0, 1), seg("v3", 1, 1)]  # "0,1" never seen
    labels = evaluation_labels(val, vocab)
    assert labels["action"].tolist() == [0, 2, 2, 1]  # the unseen pair: an id past the 2 columns
    assert labels["verb"].tolist() == [0, 0, 0, 1] and labels["noun"].tolist() == [0, 1, 1, 1]
    # perfect verb/noun scores; action scores that rank the true seen pair first
    scores = {"verb": torch.eye(2)[[0, 0, 0, 1]], "noun": torch.eye(2)[[0, 1, 1, 1]],
              "action": torch.eye(2)[[0, 1, 1, 1]]}
    ev = SplitEvaluation(val, vocab, protocol_sets(train, val), training_prior(train, vocab))
    m = ev.metrics(scores)
    # action: classes "0,0" (1/1), "1,1" (1/1), "0,1" (0/2): mean 2/3; top-1 over segments 2/4.
    # top-5 with 2 columns always names both seen pairs, so only the unseen ones miss.
    assert m["action_recall5"] == pytest.approx(2 / 3) and m["action_top1"] == pytest.approx(0.5)
    assert m["verb_top1"] == 1.0 and m["noun_top1"] == 1.0  # counted as usual
    assert m["action_recall5/overall"] == m["action_recall5"]


def test_subsets_follow_the_challenge():
    train = [seg(f"t{i}", 0, 0) for i in range(8)] + [seg("t8", 1, 2), seg("t9", 2, 1)]
    val = [seg("v0", 0, 0), seg("v1", 1, 0, "P09"), seg("v2", 0, 2), seg("v3", 2, 1, "P09")]
    sets = protocol_sets(train, val)
    assert sets.tail_verbs == {1, 2} and sets.tail_nouns == {1, 2} and sets.unseen_participants == {"P09"}
    assert set(sets.source.values()) == {"derived"}
    masks = subset_masks(val, sets, ("verb", "noun", "action"))
    assert masks["unseen"]["verb"].tolist() == [False, True, False, True]
    assert masks["tail"]["verb"].tolist() == [False, True, False, True]
    assert masks["tail"]["noun"].tolist() == [False, False, True, True]
    # an action is tail when its verb or its noun is
    assert masks["tail"]["action"].tolist() == [False, True, True, True]
    assert unseen_participants(train, [Segment("g", "x", 0, 1, label="a")]) == set()  # no id, not unseen


def test_empty_subset_is_left_out():
    train = [seg("t0", 0, 0), seg("t1", 1, 1)]
    vocab = build_vocab(train, 2, 2)
    ev = SplitEvaluation(train, vocab, protocol_sets(train, train), training_prior(train, vocab))
    m = ev.metrics(ev.prior_scores())
    assert "verb_recall5/unseen" not in m and "verb_recall5/overall" in m


def test_prior_fills_the_segments_without_features():
    prior = {"verb": torch.tensor([0.7, 0.3])}
    rows = {"verb": torch.tensor([[0.1, 0.9]])}
    full, fallback = fill_with_prior(rows, ["b"], ["a", "b", "c"], prior)
    assert fallback.tolist() == [True, False, True]
    assert torch.equal(full["verb"], torch.tensor([[0.7, 0.3], [0.1, 0.9], [0.7, 0.3]]))
    with pytest.raises(ValueError, match="several scored rows"):
        fill_with_prior({"verb": torch.zeros(2, 2)}, ["b", "b"], ["a", "b"], prior)
    with pytest.raises(ValueError, match="not among the segments"):
        fill_with_prior(rows, ["z"], ["a", "b"], prior)


def test_official_lists_are_read_by_column(tmp_path):
    (tmp_path / "tail_verbs.csv").write_text("verb\n10\n12\n")
    (tmp_path / "people.csv").write_text("participant_id\nP18\nP32\n")
    (tmp_path / "wrong.csv").write_text("noun\n3\n")
    (tmp_path / "bad.csv").write_text("verb\nten\n")
    assert read_id_list(tmp_path / "tail_verbs.csv", "verb") == {10, 12}
    assert read_id_list(tmp_path / "people.csv", "participant_id", str) == {"P18", "P32"}
    with pytest.raises(AnnotationError, match=r"wrong\.csv: missing column 'verb'"):
        read_id_list(tmp_path / "wrong.csv", "verb")
    with pytest.raises(AnnotationError, match=r"bad\.csv, line 2: column 'verb' value 'ten'"):
        read_id_list(tmp_path / "bad.csv", "verb")
    with pytest.raises(AnnotationError, match="not found"):
        read_id_list(tmp_path / "none.csv", "verb")
    train = [seg("t0", 0, 0), seg("t1", 1, 1)]
    sets = protocol_sets(train, train, tail_verbs=str(tmp_path / "tail_verbs.csv"),
                         unseen=str(tmp_path / "people.csv"))
    assert sets.tail_verbs == {10, 12} and sets.unseen_participants == {"P18", "P32"}
    assert sets.source["tail_verbs"].endswith("tail_verbs.csv") and sets.source["tail_nouns"] == "derived"


def _official_reading(sub, segments, tail_verbs, tail_nouns, unseen):
    """Class-mean top-5 recall read off a submission the way the challenge's rules state it,
    written independently of ``protocol.py``: ranks from the JSON's own scores, an action is the
    (verb, noun) pair, the class mean runs over the pairs present in each subset."""
    def ranked(uid, task):
        entry = sub["results"][uid][task]
        keys = sorted(entry, key=lambda k: -entry[k])
        return [tuple(int(x) for x in k.split(",")) if task == "action" else int(k) for k in keys]

    def truth(s, task):
        return {"verb": s.verb, "noun": s.noun, "action": (s.verb, s.noun)}[task]

    def mt5r(rows, task):
        per_class = {}
        for s in rows:
            per_class.setdefault(truth(s, task), []).append(truth(s, task) in ranked(s.uid, task)[:5])
        return sum(sum(v) / len(v) for v in per_class.values()) / len(per_class)

    out = {}
    for task in ("verb", "noun", "action"):
        out[f"{task}_recall5/overall"] = mt5r(segments, task)
        out[f"{task}_recall5/unseen"] = mt5r([s for s in segments if s.participant_id in unseen], task)
        tail = {"verb": lambda s: s.verb in tail_verbs, "noun": lambda s: s.noun in tail_nouns,
                "action": lambda s: s.verb in tail_verbs or s.noun in tail_nouns}[task]
        out[f"{task}_recall5/tail"] = mt5r([s for s in segments if tail(s)], task)
    return out


def test_our_metrics_equal_the_challenge_reading_of_our_json():
    g = torch.Generator().manual_seed(0)
    nv, nn_ = 12, 15
    vocab_pairs = {(v, n) for v in range(nv) for n in range(nn_) if (v * 7 + n * 3) % 4 == 0}
    train = [seg(f"t{i}", v, n, f"P0{i % 3}") for i, (v, n) in enumerate(sorted(vocab_pairs))]
    train += [seg(f"x{i}", 0, 0, "P00") for i in range(40)]  # a frequent head class, so a tail exists
    vocab = build_vocab(train, nv, nn_)
    val = []
    for i in range(300):
        v, n = int(torch.randint(nv, (1,), generator=g)), int(torch.randint(nn_, (1,), generator=g))
        val.append(seg(f"v{i}", v, n, ("P00", "P01", "P07", "P08")[i % 4]))  # P07/P08: unseen
    sets = protocol_sets(train, val)
    assert sets.unseen_participants == {"P07", "P08"} and sets.tail_verbs and sets.tail_nouns
    ev = SplitEvaluation(val, vocab, sets, training_prior(train, vocab))
    # a head that scored all but 20 segments (the rest fall back on the prior), with a bias to the truth
    rows = val[20:]
    labels = evaluation_labels(rows, vocab)
    probs = {k: torch.softmax(torch.randn(len(rows), c, generator=g) * 2, -1) for k, c in vocab.num_classes.items()}
    for k in ("verb", "noun", "action"):
        hit = (labels[k] < probs[k].shape[1]) & (torch.rand(len(rows), generator=g) < 0.5)
        probs[k][hit.nonzero().flatten(), labels[k][hit]] += 1.0
    full, fallback = ev.scores(probs, [s.uid for s in rows])
    assert int(fallback.sum()) == 20
    ours = ev.metrics(full)
    sub = build_challenge_json(ev.uids, full, vocab.actions, top_actions=100)
    validate_challenge_json(sub, nv, nn_, min(100, len(vocab.actions)), expected_uids=[s.uid for s in val])
    theirs = _official_reading(sub, val, sets.tail_verbs, sets.tail_nouns, sets.unseen_participants)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key  # float32 class means
    with pytest.raises(ValueError, match="1 narration ids have no result"):
        validate_challenge_json(sub, nv, nn_, min(100, len(vocab.actions)), expected_uids=ev.uids + ["extra"])


@pytest.mark.skipif(not (EPIC / "rulstm_ek100" / "training.csv").is_file(), reason=f"real EPIC-100 files not in {EPIC}")
def test_derived_lists_equal_the_official_files():
    # The official EPIC_100_tail_verbs.csv holds verb 10 and 12..96 (86 classes), the nouns file
    # 228 classes from 56 up, EPIC_100_unseen_participant_ids_validation.csv P18 and P32. Here
    # they are derived from all EK-100 training segments (the RULSTM split) by the stated rule.
    train = read_annotations(EPIC / "rulstm_ek100" / "training.csv")
    val = read_annotations(EPIC / "EPIC_100_validation.csv")
    sets = protocol_sets(train, val)
    assert sets.tail_verbs == {10, *range(12, 97)}
    assert len(sets.tail_nouns) == 228 and min(sets.tail_nouns) == 56
    assert not {57, 58, 60, 63, 66} & sets.tail_nouns  # gaps of the official list below 70
    absent = {c for c in range(300) if c not in Counter(s.noun for s in train)}
    assert absent == {205, 240, 270, 275, 286, 288, 289, 290, 294, 295, 296} and not absent & sets.tail_nouns
    assert sets.unseen_participants == {"P18", "P32"}
    masks = subset_masks(val, sets, ("verb", "noun", "action"))
    counts = {f"{s}/{k}": int(masks[s][k].sum()) for s, k in (("unseen", "verb"), ("tail", "verb"),
                                                                ("tail", "noun"), ("tail", "action"))}
    # validation segments in each subset (of 9,668)
    assert counts == {"unseen/verb": 1065, "tail/verb": 1760, "tail/noun": 1900, "tail/action": 3105}, counts
