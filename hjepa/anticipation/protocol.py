"""The EPIC-KITCHENS-100 anticipation protocol: which segments count, and on which subsets.

The challenge scores **every** validation segment and reports class-mean top-5 recall on three
sets of segments (``evaluate_anticipation_json_ek100.py`` in ``epic-kitchens/C3-Action-Anticipation``):

``overall``
    every segment;
``unseen``
    segments of the participants with no video in the training split
    (``EPIC_100_unseen_participant_ids_validation.csv``: P18 and P32);
``tail``
    per output: verb metrics on the segments whose verb is a tail verb, noun metrics on those
    whose noun is a tail noun, action metrics on those whose verb **or** noun is a tail class
    (``EPIC_100_tail_verbs.csv`` / ``EPIC_100_tail_nouns.csv``). Tail classes are the rarest
    training classes that together hold at most 20 % of the training instances.

In every set the class mean runs over the classes present in that set's ground truth. An
action class is a (verb, noun) pair; a segment whose pair never occurs in training cannot be
named by a head whose action outputs are the training pairs, so it is a miss in the action
metrics, and its pair is a class of recall 0 in the class mean. Its verb and noun count as usual.

The class lists are read from the official files when given; otherwise they are derived from
the annotations by the rule above (:func:`tail_classes`, :func:`unseen_participants`). With
all 67,217 EK-100 training segments (``rulstm_ek100/training.csv``) the derived lists equal the
official files: 86 tail verbs, 228 tail nouns, unseen participants P18 and P32.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Iterable, Mapping, Optional, Sequence

import torch
from torch import Tensor

from hjepa.anticipation.annotations import ActionVocab, AnnotationError, Segment
from hjepa.anticipation.metrics import anticipation_metrics, class_mean_topk_recall

TAIL_FRACTION = 0.2  # the challenge's tail: the rarest classes holding <= 20 % of training instances
SUBSETS = ("overall", "unseen", "tail")


def tail_classes(counts: Mapping[Hashable, int], fraction: float = TAIL_FRACTION) -> set:
    """The rarest classes whose training instances sum to at most ``fraction`` of all instances.

    Classes are taken from the rarest up (ties broken by the class key, so the result does
    not depend on dict order) while the running sum stays within the budget. Classes with no
    training instance are not in ``counts`` and are never tail (as in the official lists).
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"tail fraction must be in [0, 1], got {fraction}")
    budget = fraction * sum(counts.values())
    tail, total = set(), 0
    for cls, n in sorted(counts.items(), key=lambda kv: (kv[1], kv[0])):
        if n <= 0:
            continue
        if total + n > budget:
            break
        total += n
        tail.add(cls)
    return tail


def unseen_participants(train: Iterable[Segment], val: Iterable[Segment]) -> set[str]:
    """Participants of ``val`` with no segment in ``train`` (segments without a participant id are ignored)."""
    seen = {s.participant_id for s in train}
    return {s.participant_id for s in val if s.participant_id and s.participant_id not in seen}


def read_id_list(path: str | Path, column: str, kind: type = int) -> set:
    """One column of an official class / participant list (``verb``, ``noun``, ``participant_id``)."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"list file not found: {path}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or column not in [c.strip() for c in reader.fieldnames]:
            raise AnnotationError(f"{path}: missing column {column!r} (header: {reader.fieldnames})")
        out = set()
        for line, row in enumerate(reader, start=2):
            value = {k.strip(): v for k, v in row.items() if k is not None}[column]
            value = (value or "").strip()
            if not value:
                continue
            try:
                out.add(kind(value))
            except ValueError:
                raise AnnotationError(f"{path}, line {line}: column {column!r} value {value!r} is not "
                                      f"a {kind.__name__}") from None
    return out


@dataclass(frozen=True)
class ProtocolSets:
    """The class and participant lists that define the ``unseen`` and ``tail`` subsets.

    ``tail_verbs`` / ``tail_nouns``: class ids (verb/noun vocabularies); ``tail_labels``: action
    labels (generic vocabularies, where the tail is taken over the labels themselves);
    ``unseen_participants``: participant ids; ``source``: for each list, the file it was read
    from or ``"derived"``.
    """

    tail_verbs: frozenset = frozenset()
    tail_nouns: frozenset = frozenset()
    tail_labels: frozenset = frozenset()
    unseen_participants: frozenset = frozenset()
    source: dict = field(default_factory=dict)


def protocol_sets(
    train: Sequence[Segment],
    val: Sequence[Segment],
    tail_verbs: Optional[str] = None,
    tail_nouns: Optional[str] = None,
    unseen: Optional[str] = None,
) -> ProtocolSets:
    """Read the official lists where paths are given, derive the others from the annotations."""
    source = {}
    generic = not all(s.has_verb_noun for s in train)
    if tail_verbs:
        verbs, source["tail_verbs"] = read_id_list(tail_verbs, "verb"), str(tail_verbs)
    else:
        verbs = set() if generic else tail_classes(Counter(s.verb for s in train))
        source["tail_verbs"] = "derived"
    if tail_nouns:
        nouns, source["tail_nouns"] = read_id_list(tail_nouns, "noun"), str(tail_nouns)
    else:
        nouns = set() if generic else tail_classes(Counter(s.noun for s in train))
        source["tail_nouns"] = "derived"
    labels = tail_classes(Counter(s.label for s in train)) if generic else set()
    if unseen:
        people, source["unseen_participants"] = read_id_list(unseen, "participant_id", str), str(unseen)
    else:
        people, source["unseen_participants"] = unseen_participants(train, val), "derived"
    return ProtocolSets(frozenset(verbs), frozenset(nouns), frozenset(labels), frozenset(people), source)


def evaluation_labels(segments: Sequence[Segment], vocab: ActionVocab) -> dict[str, Tensor]:
    """``{output: [N]}`` class ids of every segment, also those the vocabulary cannot name.

    Verb and noun ids are the segments' own. An action is its vocabulary index when its pair
    (or label) was seen in training, else ``A + j`` (``A`` action classes, ``j`` numbering the
    unseen pairs in order of appearance): no score column can name it, so it is always a miss,
    and each unseen pair is its own class in the class mean, as in the official evaluation.
    """
    unseen: dict[str, int] = {}
    actions = []
    for s in segments:
        idx = vocab.action_index.get(s.label)
        if idx is None:
            idx = len(vocab.actions) + unseen.setdefault(s.label, len(unseen))
        actions.append(idx)
    out = {"action": torch.tensor(actions, dtype=torch.long)}
    if "verb" in vocab.outputs:
        out["verb"] = torch.tensor([s.verb for s in segments], dtype=torch.long)
        out["noun"] = torch.tensor([s.noun for s in segments], dtype=torch.long)
    return {name: out[name] for name in vocab.outputs}


def subset_masks(segments: Sequence[Segment], sets: ProtocolSets,
                 outputs: Sequence[str]) -> dict[str, dict[str, Tensor]]:
    """``{subset: {output: bool [N]}}``: which segments each subset scores, per output."""
    n = len(segments)
    unseen = torch.tensor([s.participant_id in sets.unseen_participants for s in segments], dtype=torch.bool)
    if "verb" in outputs:
        tv = torch.tensor([s.verb in sets.tail_verbs for s in segments], dtype=torch.bool)
        tn = torch.tensor([s.noun in sets.tail_nouns for s in segments], dtype=torch.bool)
        tail = {"verb": tv, "noun": tn, "action": tv | tn}
    else:
        tail = {"action": torch.tensor([s.label in sets.tail_labels for s in segments], dtype=torch.bool)}
    every = torch.ones(n, dtype=torch.bool)
    return {"overall": {o: every for o in outputs}, "unseen": {o: unseen for o in outputs},
            "tail": {o: tail[o] for o in outputs}}


def protocol_metrics(
    scores: Mapping[str, Tensor], labels: Mapping[str, Tensor], masks: Mapping[str, Mapping[str, Tensor]]
) -> dict[str, float]:
    """Flat metrics over every segment, and class-mean recall@5 per subset.

    Args:
        scores: ``{output: [N, C]}``, one row per segment (fallback rows included).
        labels: ``{output: [N]}`` from :func:`evaluation_labels` (ids ``>= C``: always a miss).
        masks: from :func:`subset_masks`.

    Returns ``{o}_recall5``, ``{o}_top1``, ``{o}_top5`` (every segment, as before) and
    ``{o}_recall5/{overall,unseen,tail}``; a subset with no segment is left out (no number
    can be given for it: e.g. the synthetic data have one participant, so nobody is unseen).
    """
    out = anticipation_metrics(scores, labels)
    for name, s in scores.items():
        s, y = s.detach().float().cpu(), labels[name].detach().long().cpu()
        for subset in SUBSETS:
            m = masks[subset][name]
            if m.any():
                out[f"{name}_recall5/{subset}"] = class_mean_topk_recall(s[m], y[m], 5)
    return out


def training_prior(segments: Sequence[Segment], vocab: ActionVocab) -> dict[str, Tensor]:
    """``{output: [C]}`` training-set class frequencies (sum 1): the guess for a segment with nothing observed.

    Equally frequent classes are ordered by class id (EPIC ids run from the most frequent class
    of the whole dataset down) by adding less than half an instance within each group of ties:
    the ranking is then strict, so our top-5 and the one the challenge reads off the JSON (its
    scores kept to 6 significant digits) are the same, where tied scores would be ordered
    arbitrarily by each.
    """
    out = {}
    for name, n in vocab.num_classes.items():
        counts = torch.zeros(n, dtype=torch.float64)
        for s in segments:
            t = vocab.targets(s)
            if t is not None:
                counts[t[name]] += 1
        if counts.sum() == 0:
            raise ValueError("no training segment has a class of the vocabulary: no prior to fall back on")
        bonus = torch.zeros(n, dtype=torch.float64)
        for value in counts.unique():
            group = (counts == value).nonzero().flatten()  # ascending class ids
            g = len(group)
            bonus[group] = 0.5 * (g - torch.arange(g, dtype=torch.float64)) / g  # in (0, 0.5], decreasing
        p = counts + bonus
        out[name] = (p / p.sum()).float()
    return out


def fill_with_prior(
    row_scores: Mapping[str, Tensor], row_uids: Sequence[str], uids: Sequence[str], prior: Mapping[str, Tensor]
) -> tuple[dict[str, Tensor], Tensor]:
    """Scores for every segment of ``uids``: the head's row where it has one, else the prior.

    Args:
        row_scores: ``{output: [M, C]}`` probabilities of the rows a head scored.
        row_uids: narration id of each of those ``M`` rows (each at most once).
        uids: every segment to score, ``N`` of them.
        prior: ``{output: [C]}`` (:func:`training_prior`).

    Returns ``({output: [N, C]}, fallback bool [N])``.
    """
    if len(set(row_uids)) != len(row_uids):
        raise ValueError("a segment has several scored rows: score each validation segment once")
    where = {u: i for i, u in enumerate(row_uids)}
    extra = sorted(set(where) - set(uids))
    if extra:
        raise ValueError(f"{len(extra)} scored rows are not among the segments to score, e.g. {extra[:3]}")
    src = torch.tensor([where.get(u, -1) for u in uids], dtype=torch.long)
    fallback = src < 0
    out = {}
    for name, p in row_scores.items():
        full = prior[name].float().expand(len(uids), -1).clone()
        full[~fallback] = p.float()[src[~fallback]]
        out[name] = full
    return out, fallback


class SplitEvaluation:
    """Everything needed to score one validation split the challenge's way, built once.

    ``segments``: every segment of the split (``N``); heads score the rows they have features
    for, the rest get the training prior (:func:`fill_with_prior`).
    """

    def __init__(self, segments: Sequence[Segment], vocab: ActionVocab, sets: ProtocolSets,
                 prior: Mapping[str, Tensor]) -> None:
        if not segments:
            raise ValueError("no validation segment to score")
        self.segments, self.vocab, self.sets, self.prior = list(segments), vocab, sets, dict(prior)
        self.uids = [s.uid for s in self.segments]
        self.labels = evaluation_labels(self.segments, vocab)
        self.masks = subset_masks(self.segments, sets, vocab.outputs)

    def scores(self, row_scores: Mapping[str, Tensor], row_uids: Sequence[str]) -> tuple[dict[str, Tensor], Tensor]:
        """``({output: [N, C]}, fallback bool [N])`` from a head's ``{output: [M, C]}`` probabilities."""
        return fill_with_prior(row_scores, row_uids, self.uids, self.prior)

    def metrics(self, scores: Mapping[str, Tensor]) -> dict[str, float]:
        """:func:`protocol_metrics` of ``{output: [N, C]}`` scores."""
        return protocol_metrics(scores, self.labels, self.masks)

    def prior_scores(self) -> dict[str, Tensor]:
        """``{output: [N, C]}``: the training prior for every segment (the constant-guess baseline)."""
        return {k: v.float().expand(len(self.uids), -1) for k, v in self.prior.items()}
