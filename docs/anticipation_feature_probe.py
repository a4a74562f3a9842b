#!/usr/bin/env python
"""What each level's anticipation features know: the next, the running and the previous action.

Reads the features an ``hjepa anticipate`` run cached (``features_train.pt``, ``features_val.pt``
in its folder; ``cache_features: true``, the default of the probe mode) and the EPIC-style
annotations they were made from. For every action, the *running* action is the segment before
it in its video (what is happening ``tau_a`` seconds before it starts, when segments are longer
than ``tau_a``) and the *previous* one the segment before that. The run's own attentive head
(:class:`hjepa.anticipation.head.AnticipationHead`, same training) is trained on chosen token sets
to name each of the three; validation accuracy is printed beside the majority class, with the
effective rank of each token set (``hjepa.losses.stats.effective_rank`` of ``[N, Q*D]``).

On the synthetic dataset it also asks whether a token set holds *where the objects are* at the
observation end: a ridge regression from the flattened tokens to every object's position (``sin``
and ``cos`` of ``2*pi*x`` and ``2*pi*y``, the positions live on a torus), fitted on the training
features and scored by its validation R^2 (``frame_labels_*.csv``; skipped when they are absent).

    python docs/anticipation_feature_probe.py --run runs/anticipate/synthetic \\
        --annotations runs/anticipate/synthetic/synthetic
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import torch

from hjepa.anticipation.annotations import Segment, read_annotations, read_video_info
from hjepa.anticipation.config import AnticipationOptimConfig, HeadConfig
from hjepa.anticipation.features import FeatureSet
from hjepa.anticipation.head_training import (
    HeadSpec,
    build_heads,
    fit_heads,
    predict_heads,
    set_input_stats,
)
from hjepa.eval.probes import r2_score
from hjepa.losses.stats import effective_rank

WHICH = ("next", "running", "previous")  # the action itself, the one before it, the one before that


def action_history(segments: list[Segment]) -> dict[str, tuple]:
    """``uid -> (this, previous, the one before)`` as ``(verb, noun)`` pairs (None before a video's start)."""
    by_video: dict[str, list[Segment]] = {}
    for s in segments:
        by_video.setdefault(s.video_id, []).append(s)
    out = {}
    for segs in by_video.values():
        segs.sort(key=lambda s: s.start_s)
        for i, s in enumerate(segs):
            out[s.uid] = tuple((segs[j].verb, segs[j].noun) if j >= 0 else None for j in (i, i - 1, i - 2))
    return out


SPLITS = {"train": "train", "val": "validation"}  # features_<key>.pt -> annotations_<value>.csv


def load_run(run: Path, annotations: Path) -> tuple[dict, dict[str, list[Segment]]]:
    """The run's cached features and the annotated segments, per split (``train``, ``val``)."""
    feats = {split: torch.load(run / f"features_{split}.pt", weights_only=True) for split in SPLITS}
    segments = {split: read_annotations(annotations / f"annotations_{name}.csv") for split, name in SPLITS.items()}
    return feats, segments


def probe(run: Path, annotations: Path, sets: list[tuple[str, ...]], epochs: int, dim: int, seed: int,
          loaded: tuple[dict, dict[str, list[Segment]]] | None = None) -> dict:
    """``loaded``: :func:`load_run`'s result when the caller already has it."""
    feats, segments = loaded or load_run(run, annotations)
    history = {split: action_history(segs) for split, segs in segments.items()}
    shapes = {k: tuple(v.shape[1:]) for k, v in feats["train"]["tokens"].items()}
    missing = sorted({s for names in sets for s in names} - set(shapes))
    if missing:
        raise SystemExit(f"token sets {missing} are not in the cached features; they hold {sorted(shapes)}")
    specs = [HeadSpec("+".join(names), names) for names in sets]
    result: dict = {"effective_rank": {k: float(effective_rank(v.flatten(1))) for k, v in feats["train"]["tokens"].items()}}
    for w, name in enumerate(WHICH):
        classes = sorted({h[w] for h in history["train"].values() if h[w] is not None})
        index = {c: i for i, c in enumerate(classes)}

        def labelled(split: str) -> FeatureSet:
            f, hist = feats[split], history[split]
            y = torch.tensor([index.get(hist[u][w], -1) if u in hist and hist[u][w] is not None else -1 for u in f["uids"]])
            return FeatureSet(f["tokens"], {"action": y}, f["uids"])

        train, val = labelled("train"), labelled("val")
        torch.manual_seed(seed)
        heads = build_heads(specs, shapes, {"action": len(classes)}, HeadConfig(dim=dim, num_heads=4))
        rows = train.labelled()
        set_input_stats(heads, specs, {k: v[rows] for k, v in train.tokens.items()})
        opt = AnticipationOptimConfig(epochs=epochs, batch_size=64, lr=2e-3, label_smoothing=0.1)
        fit_heads(heads, specs, train, opt, seed=seed)
        logits = predict_heads(heads, specs, val)
        y = val.targets["action"]
        keep = y >= 0
        result[name] = {s.name: float((logits[s.name]["action"][keep].argmax(1) == y[keep]).float().mean()) for s in specs}
        result[name]["majority"] = float(torch.bincount(y[keep]).max() / keep.sum())
        result[name]["classes"] = len(classes)
    return result


def _frame_positions(path: Path) -> dict[tuple[str, int], list[float]]:
    """``frame_labels_<split>.csv`` -> ``{(video_id, frame): [sin, cos] of 2*pi*(x0, y0, x1, ...)}``."""
    out = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        coords = [c for c in reader.fieldnames or [] if c[:1] in "xy" and c[1:].isdigit()]
        for row in reader:
            angles = [2 * math.pi * float(row[c]) for c in coords]
            out[(row["video_id"], int(row["frame"]))] = [g(a) for a in angles for g in (math.sin, math.cos)]
    return out


def position_r2(run: Path, annotations: Path, names: list[str], ridge: float = 0.1,
                loaded: tuple[dict, dict[str, list[Segment]]] | None = None) -> dict[str, float] | None:
    """Validation R^2 (mean over the object coordinates) of a ridge regression from each token set,
    flattened, to the objects' positions at the observation end; None without the synthetic frame
    labels. (``hjepa evaluate``'s linear probe averages the tokens first, which loses the layout.)

    The observation end of an action is frame ``floor((start_s - tau_a) * fps)``, as the windows
    cut it (``hjepa.anticipation.windows``). ``ridge`` is the penalty per training sample on
    standardised features. ``loaded``: :func:`load_run`'s result when the caller already has it.
    """
    files = {split: annotations / f"frame_labels_{name}.csv" for split, name in SPLITS.items()}
    if not all(p.is_file() for p in [*files.values(), annotations / "video_info.csv"]):
        return None
    fps = {v: i.fps for v, i in read_video_info(annotations / "video_info.csv").items()}
    all_feats, segments = loaded or load_run(run, annotations)
    data = {}
    for split, path in files.items():
        positions = _frame_positions(path)
        feats, starts = all_feats[split], {s.uid: s for s in segments[split]}
        rows, y = [], []
        for i, uid in enumerate(feats["uids"]):
            seg = starts.get(uid)
            if seg is None or seg.video_id not in fps:
                continue
            end = math.floor((seg.start_s - float(feats["tau_a"][i])) * fps[seg.video_id] + 1e-6)
            if (seg.video_id, end) in positions:
                rows.append(i)
                y.append(positions[(seg.video_id, end)])
        if not rows:
            raise SystemExit(f"no {split} feature of {run} matches a frame of {path}: are they from the same dataset?")
        data[split] = (feats["tokens"], torch.tensor(rows), torch.tensor(y, dtype=torch.float64))
    result = {}
    for name in names:
        (tok_tr, y_tr), (tok_va, y_va) = [(t[name][r].flatten(1).double(), y) for t, r, y in (data["train"], data["val"])]
        mean, std = tok_tr.mean(0), tok_tr.std(0) + 1e-6
        x_tr = torch.cat([(tok_tr - mean) / std, torch.ones(len(tok_tr), 1, dtype=torch.float64)], 1)
        x_va = torch.cat([(tok_va - mean) / std, torch.ones(len(tok_va), 1, dtype=torch.float64)], 1)
        gram = x_tr.T @ x_tr + ridge * len(x_tr) * torch.eye(x_tr.shape[1], dtype=torch.float64)
        w = torch.linalg.solve(gram, x_tr.T @ y_tr)
        result[name] = r2_score(x_va @ w, y_va)
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="an `hjepa anticipate` folder with cached features")
    ap.add_argument("--annotations", type=Path, required=True,
                    help="folder with annotations_train.csv and annotations_validation.csv (EPIC layout)")
    ap.add_argument("--sets", default="ctx1;ctx2;ctx2,pred2;ctx1,ctx2",
                    help="token sets, one head each: ';' between heads, ',' inside one (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--dim", type=int, default=64, help="head width")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    sets = [tuple(s.split(",")) for s in args.sets.split(";")]
    loaded = load_run(args.run, args.annotations)
    result = probe(args.run, args.annotations, sets, args.epochs, args.dim, args.seed, loaded=loaded)
    result["position_r2"] = position_r2(args.run, args.annotations, sorted(result["effective_rank"]), loaded=loaded)
    names = ["+".join(s) for s in sets]
    print("validation accuracy of the run's head on each token set")
    print(f"{'action':>9}  " + "  ".join(f"{n:>10}" for n in names) + "  majority  classes")
    for which in WHICH:
        r = result[which]
        print(f"{which:>9}  " + "  ".join(f"{r[n]:>10.3f}" for n in names) + f"  {r['majority']:>8.3f}  {r['classes']:>7}")
    print("effective rank: " + ", ".join(f"{k} {v:.1f}" for k, v in result["effective_rank"].items()))
    if result["position_r2"] is not None:
        print("object positions at the observation end, validation R^2 of a ridge regression: "
              + ", ".join(f"{k} {v:.2f}" for k, v in result["position_r2"].items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
