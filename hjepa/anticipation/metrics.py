"""Anticipation metrics as the EPIC-KITCHENS-100 challenge defines them.

The challenge's headline number is the **class-mean top-5 recall**: for every class that occurs
in the ground truth, the fraction of its segments whose true class is among the 5 best scored,
then the plain mean over those classes (classes absent from the ground truth do not count; a
frequent class weighs as much as a rare one). Top-k accuracy is the same hit rate over segments.

A label ``>= C`` (``scores: [N, C]``) is a class no score column names (e.g. a validation
action never seen in training): it is always a miss and, in the class mean, a class of recall 0.
Which segments are scored, and on which subsets, is ``protocol.py``'s business.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor


def _check(scores: Tensor, labels: Tensor) -> None:
    if scores.ndim != 2 or labels.ndim != 1 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores must be [N, C] and labels [N], got {tuple(scores.shape)} and {tuple(labels.shape)}")
    if scores.shape[0] == 0:
        raise ValueError("need at least one segment to evaluate")
    if (labels < 0).any():
        raise ValueError("labels must be class ids >= 0 (a class the scores cannot name is an id >= C, not -1)")


def topk_hits(scores: Tensor, labels: Tensor, k: int) -> Tensor:
    """bool ``[N]``: is the true class among the ``k`` highest scores? (``scores: [N, C]``)"""
    _check(scores, labels)
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices  # [N, k]
    return (top == labels[:, None]).any(dim=1)


def topk_accuracy(scores: Tensor, labels: Tensor, k: int = 1) -> float:
    """Fraction of segments whose true class is in the top ``k``."""
    return topk_hits(scores, labels, k).float().mean().item()


def class_mean_topk_recall(scores: Tensor, labels: Tensor, k: int = 5) -> float:
    """Mean over the classes present in ``labels`` of each class's top-``k`` recall."""
    hits = topk_hits(scores, labels, k).float()
    classes, inverse = labels.unique(return_inverse=True)
    per_class_hits = torch.zeros(len(classes)).index_add_(0, inverse, hits)
    per_class_count = torch.zeros(len(classes)).index_add_(0, inverse, torch.ones_like(hits))
    return (per_class_hits / per_class_count).mean().item()


def anticipation_metrics(
    scores: Mapping[str, Tensor], labels: Mapping[str, Tensor], prefix: str = ""
) -> dict[str, float]:
    """Flat metrics for every output (``verb``, ``noun``, ``action``).

    Returns ``{prefix}{output}_recall5`` (class-mean top-5 recall), ``{prefix}{output}_top1`` and
    ``{prefix}{output}_top5`` (accuracies), all in [0, 1].
    """
    out: dict[str, float] = {}
    for name, s in scores.items():
        y = labels[name]
        s, y = s.detach().float().cpu(), y.detach().long().cpu()
        out[f"{prefix}{name}_recall5"] = class_mean_topk_recall(s, y, 5)
        out[f"{prefix}{name}_top1"] = topk_accuracy(s, y, 1)
        out[f"{prefix}{name}_top5"] = topk_accuracy(s, y, 5)
    return out


def chance_recall(num_classes: int, k: int = 5) -> float:
    """Expected class-mean top-``k`` recall of random scores: ``min(k, C) / C`` for every class."""
    return min(k, num_classes) / num_classes
