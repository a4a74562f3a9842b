"""Predictions in the EPIC-KITCHENS-100 action-anticipation challenge's JSON format.

The submission format (version ``"0.2"``)::

    {
      "version": "0.2",
      "challenge": "action_anticipation",
      "sls_pt": 3, "sls_tl": 3, "sls_td": 3,        # supervision levels, each 0..5
      "results": {
        "<narration_id>": {
          "verb":   {"0": score, ..., "96": score},     # every verb class
          "noun":   {"0": score, ..., "299": score},    # every noun class
          "action": {"<verb>,<noun>": score, ...}       # the 100 best (verb, noun) pairs
        }, ...
      }
    }

Scores are probabilities (softmax for cross-entropy heads, sigmoid for focal heads); a higher
score ranks higher. For generic labels (no verb/noun) the same wrapper holds only ``"action"``
entries keyed by label.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor

VERSION = "0.2"
CHALLENGE = "action_anticipation"


def _num(x: float) -> float:
    # Six significant digits keep the file small (EK-100 val: ~5M scores) and ranks intact.
    return float(f"{x:.6g}")


def build_challenge_json(
    uids: Sequence[str],
    probs: Mapping[str, Tensor],
    action_names: Sequence[str],
    sls: tuple[int, int, int] = (3, 3, 3),
    top_actions: int = 100,
) -> dict:
    """Assemble the submission dict.

    Args:
        uids: narration ids, one per row.
        probs: ``{"verb": [N, V], "noun": [N, Nn], "action": [N, A]}`` (or only ``"action"``).
        action_names: name of each action column (``"verb,noun"`` or a label).
        sls: supervision levels (pretraining, training labels, training data), each in 0..5.
        top_actions: how many of the best actions to write per segment (100 in the challenge).
    """
    if any(not 0 <= v <= 5 for v in sls):
        raise ValueError(f"SLS levels must be in 0..5, got {sls}")
    n = len(uids)
    for name, p in probs.items():
        if p.shape[0] != n:
            raise ValueError(f"{name} scores have {p.shape[0]} rows for {n} ids")
    if len(set(uids)) != n:
        raise ValueError("duplicated narration ids")
    action = probs["action"].detach().float().cpu()
    if action.shape[1] != len(action_names):
        raise ValueError(f"{action.shape[1]} action columns for {len(action_names)} action names")
    k = min(top_actions, action.shape[1])
    top_p, top_i = action.topk(k, dim=1)
    others = {name: p.detach().float().cpu().tolist() for name, p in probs.items() if name != "action"}
    results = {}
    for row, uid in enumerate(uids):
        entry = {name: {str(c): _num(v) for c, v in enumerate(vals[row])} for name, vals in others.items()}
        entry["action"] = {action_names[i]: _num(p) for p, i in zip(top_p[row].tolist(), top_i[row].tolist())}
        results[uid] = entry
    return {"version": VERSION, "challenge": CHALLENGE, "sls_pt": sls[0], "sls_tl": sls[1], "sls_td": sls[2],
            "results": results}


def write_challenge_json(path: str | Path, submission: dict) -> Path:
    """Write the submission (compact JSON) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        json.dump(submission, f, separators=(",", ":"))
    return path


def validate_challenge_json(submission: dict, num_verbs: int, num_nouns: int, num_actions: int = 100,
                            expected_uids: Sequence[str] | None = None) -> None:
    """Check the structure the challenge's server checks; raise ValueError naming the first problem.

    ``expected_uids``: the narration ids of the split; as on the server, every one must have a
    result and no other id may (the server rejects a file that leaves one out).
    """
    for key in ("version", "challenge", "sls_pt", "sls_tl", "sls_td", "results"):
        if key not in submission:
            raise ValueError(f"missing property {key!r}")
    if expected_uids is not None:
        missing = sorted(set(expected_uids) - set(submission["results"]))
        unexpected = sorted(set(submission["results"]) - set(expected_uids))
        if missing:
            raise ValueError(f"{len(missing)} narration ids have no result, e.g. {missing[:3]}")
        if unexpected:
            raise ValueError(f"{len(unexpected)} unexpected narration ids, e.g. {unexpected[:3]}")
    if submission["version"] != VERSION or submission["challenge"] != CHALLENGE:
        raise ValueError(f"expected version {VERSION!r} and challenge {CHALLENGE!r}")
    for key in ("sls_pt", "sls_tl", "sls_td"):
        if not 0 <= submission[key] <= 5:
            raise ValueError(f"{key} = {submission[key]} is not in 0..5")
    for uid, entry in submission["results"].items():
        for task, count in (("verb", num_verbs), ("noun", num_nouns)):
            if task not in entry:
                raise ValueError(f"{uid}: missing {task!r} scores")
            if sorted(int(c) for c in entry[task]) != list(range(count)):
                raise ValueError(f"{uid}: {task} scores must cover classes 0..{count - 1}")
        actions = entry.get("action", {})
        if len(actions) != num_actions:
            raise ValueError(f"{uid}: {len(actions)} action scores, expected {num_actions}")
        for key, score in actions.items():
            verb, noun = (int(x) for x in key.split(","))
            if not (0 <= verb < num_verbs and 0 <= noun < num_nouns):
                raise ValueError(f"{uid}: action {key!r} is not a valid 'verb,noun' pair")
            if not isinstance(score, (int, float)):
                raise ValueError(f"{uid}: action {key!r} score {score!r} is not a number")


def scores_from_json(submission: dict, uids: Sequence[str], task: str, num_classes: int) -> Tensor:
    """Dense ``[N, C]`` scores of ``task`` (verb or noun) read back from a submission."""
    out = torch.zeros(len(uids), num_classes)
    for row, uid in enumerate(uids):
        for c, v in submission["results"][uid][task].items():
            out[row, int(c)] = v
    return out
