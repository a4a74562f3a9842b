"""The synthetic default: the built-in synthetic dataset's videos and EPIC-style annotations.

``hjepa anticipate`` with no annotation files writes (or reuses) a small synthetic dataset
(``hjepa.data.synthetic``): 64x64 videos at 8 fps whose activities are (verb = motion,
noun = object) pairs that follow recipes, so the next action is predictable from the
activities seen so far. Its videos are drawn with their own seed, so they differ from the
videos a synthetic pretraining run saw; the grammar (the recipes) is the same.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

SEED_OFFSET = 1000  # anticipation videos never repeat the pretraining videos (seed 0, 1, ...)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyntheticFiles:
    """Where the synthetic dataset's files are."""

    root: Path
    train: Path
    val: Path
    video_dir: Path
    video_pattern: str
    video_info: Path
    verb_classes: Path
    noun_classes: Path


def synthetic_files(root: Path) -> SyntheticFiles:
    """The file names ``hjepa synth`` / ``write_synthetic_dataset`` use under ``root``."""
    return SyntheticFiles(
        root=root,
        train=root / "annotations_train.csv",
        val=root / "annotations_validation.csv",
        video_dir=root,
        video_pattern="videos/{video_id}.mp4",
        video_info=root / "video_info.csv",
        verb_classes=root / "verb_classes.csv",
        noun_classes=root / "noun_classes.csv",
    )


def synthetic_annotations(root: Path, num_train_videos: int, num_val_videos: int, seed: int = 0,
                          world: dict | None = None) -> SyntheticFiles:
    """Reuse the synthetic dataset in ``root`` or write one there.

    An existing dataset (e.g. from ``hjepa synth --out root``) is used as it is; otherwise
    ``num_train_videos`` + ``num_val_videos`` videos are written with seed ``SEED_OFFSET + seed``.
    ``world``: the ``SyntheticConfig`` fields the backbone was pretrained on (its grammar, sizes
    and distractors); the videos then come from the same world, with new seeds. None: defaults.
    """
    files = synthetic_files(root)
    needed = (files.train, files.val, files.video_info, files.verb_classes, files.noun_classes)
    if all(p.is_file() for p in needed):
        _warn_if_other_world(root, world)
        return files
    from dataclasses import fields

    from hjepa.data.synthetic import SyntheticConfig, write_synthetic_dataset

    unknown = sorted(set(world or {}) - {f.name for f in fields(SyntheticConfig)})
    if unknown:
        raise ValueError(
            f"the backbone's synthetic world has setting(s) {unknown} this version of the generator does not "
            "know: write the data with the matching hjepa version, or give annotation files"
        )
    cfg = SyntheticConfig(**{**(world or {}), "seed": SEED_OFFSET + seed, "num_train_videos": num_train_videos,
                             "num_val_videos": num_val_videos})
    write_synthetic_dataset(root, cfg)
    return files


# Settings that differ between two datasets of one world: which videos, and how many.
_PER_DATASET = {"seed", "num_train_videos", "num_val_videos"}


def _warn_if_other_world(root: Path, world: dict | None) -> None:
    """An existing dataset is reused as it is; say so when it was written from another world
    than the backbone's (its ``grammar.json`` records the generator settings)."""
    grammar = root / "grammar.json"
    if not world or not grammar.is_file():
        return
    try:
        written = json.loads(grammar.read_text()).get("config") or {}
    except (OSError, ValueError, AttributeError):
        return
    differ = {k: (written.get(k), v) for k, v in world.items() if k not in _PER_DATASET and written.get(k) != v}
    if differ:
        log.warning("reusing the synthetic dataset in %s, written from another world than the backbone's "
                    "(setting: dataset vs backbone) %s; delete it to write one from the backbone's world",
                    root, ", ".join(f"{k}: {a} vs {b}" for k, (a, b) in sorted(differ.items())))
