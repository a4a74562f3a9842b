"""Anticipation data: annotations, vocabulary, per-video fps, video paths and their counts.

:func:`prepare_data` reads the annotations (writing the synthetic default first when none are
given), builds the action vocabulary from the training split, derives or reads the
unseen-participant and tail-class lists, and finds every video's fps (from the video-info
table or the videos' headers). The result, :class:`PreparedData`, plans observed clips and
loads them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from hjepa.anticipation.annotations import (
    ActionVocab,
    Segment,
    VideoTiming,
    build_vocab,
    keep_known,
    read_annotations,
    read_class_names,
    read_video_info,
)
from hjepa.anticipation.clips import ObservedClips, collate_clips, read_video_headers, video_path, worker_count
from hjepa.anticipation.config import AnticipationConfig
from hjepa.anticipation.protocol import ProtocolSets, protocol_sets
from hjepa.anticipation.windows import WindowPlan, plan_windows

log = logging.getLogger(__name__)


class PreparedData:
    """Annotations, vocabulary, per-video fps and paths of a run, with their counts.

    ``train`` / ``val``: the segments whose video is readable (the ones features are computed
    for); ``val_all``: every validation segment read, each of which is scored (those without
    features by the training prior); ``sets``: the unseen-participant and tail-class lists.
    """

    def __init__(self, cfg: AnticipationConfig, train: list[Segment], val: list[Segment], vocab: ActionVocab,
                 video_info: dict[str, VideoTiming], paths: dict[str, Path], counts: dict[str, Any],
                 val_all: list[Segment] | None = None, sets: ProtocolSets | None = None) -> None:
        self.cfg, self.train, self.val, self.vocab = cfg, train, val, vocab
        self.video_info, self.paths, self.counts = video_info, paths, counts
        self.val_all = list(val) if val_all is None else val_all
        self.sets = sets if sets is not None else protocol_sets(train, self.val_all)

    def rate(self, info: VideoTiming) -> float:
        """Frames per second of the clips cut from this video."""
        w = self.cfg.window
        if w.sample_fps is not None:
            return w.sample_fps
        return info.fps / (w.frame_step or 1)

    def plan(self, segments: list[Segment], num_frames: int, taus: list[float]) -> WindowPlan:
        w = self.cfg.window
        if w.sample_fps is not None:
            return plan_windows(segments, self.video_info, num_frames, taus, sample_fps=w.sample_fps)
        return plan_windows(segments, self.video_info, num_frames, taus, frame_step=w.frame_step or 1)

    def loader(self, plan: WindowPlan, shuffle: bool, batch_size: int, seed: int = 0) -> DataLoader:
        """The planned clips, decoded (``clips.ObservedClips``), ``batch_size`` at a time."""
        dataset = ObservedClips(plan.items, self.paths, self.cfg.window.crop_size or 64, self.cfg.data.reader)
        workers = worker_count(self.cfg.data.num_workers)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                          collate_fn=collate_clips, generator=torch.Generator().manual_seed(seed) if shuffle else None,
                          persistent_workers=False)

    def targets(self, segments: list[Segment]) -> dict[str, torch.Tensor]:
        """``{output: long [N]}`` class of each segment (-1 where its action is not in the vocabulary)."""
        return segment_targets(self.vocab, segments)


def prepare_data(cfg: AnticipationConfig, out: Path, world: dict[str, Any] | None = None) -> PreparedData:
    """Read the annotations (writing the synthetic default first if none are given).

    ``world``: the synthetic config the backbone was pretrained on; synthetic data are written
    from it (None: the generator's defaults).
    """
    d = cfg.data
    train_path, val_path, video_dir, pattern = d.train, d.val, d.video_dir, d.video_pattern
    info_path, verb_path, noun_path = d.video_info, d.verb_classes, d.noun_classes
    if not train_path:
        from hjepa.anticipation.synthetic import synthetic_annotations

        root = Path(d.synthetic_dir) if d.synthetic_dir else out / "synthetic"
        syn = synthetic_annotations(root, d.synthetic_train_videos, d.synthetic_val_videos, cfg.seed, world)
        train_path, val_path, video_dir, pattern = str(syn.train), str(syn.val), str(syn.video_dir), syn.video_pattern
        info_path, verb_path, noun_path = str(syn.video_info), str(syn.verb_classes), str(syn.noun_classes)
    table = read_video_info(info_path) if info_path else None
    read = lambda p: read_annotations(p, d.format, d.time_source, d.frame_fps, table)  # noqa: E731
    train, val = read(train_path), read(val_path)
    # The unseen/tail lists describe the dataset, so they come from the whole training file
    # (before max_train shortens it for quick runs).
    sets = protocol_sets(train, val, d.tail_verbs, d.tail_nouns, d.unseen_participants)
    if d.max_train:
        train = train[: d.max_train]
    if d.max_val:
        val = val[: d.max_val]
    nv = len(read_class_names(verb_path)) if verb_path else None
    nn_ = len(read_class_names(noun_path)) if noun_path else None
    vocab = build_vocab(train, nv, nn_)
    if "verb" in vocab.outputs and nv is None:
        # Without class files the verb/noun ranges cover both splits, so validation ids index too.
        vocab = ActionVocab(vocab.outputs, max(vocab.num_verbs, 1 + max(s.verb for s in val)),
                            max(vocab.num_nouns, 1 + max(s.noun for s in val)), vocab.actions)
    _, _, report = keep_known(val, vocab)
    paths = {s.video_id: video_path(video_dir, pattern, s) for s in train + val}
    skipped: list[str] = []
    if table is None:
        table, probe = read_video_headers(paths, d.reader)
        skipped = probe.skipped_files
    else:
        missing = sorted(v for v in paths if not paths[v].is_file())
        skipped = [f"{paths[v]}: file does not exist" for v in missing]
        for line in skipped[:5]:
            log.warning("skipping video %s", line)
        if len(skipped) > 5:
            log.warning("... and %d more missing videos (all listed in summary.json)", len(skipped) - 5)
        gone = set(missing)
        table = {k: v for k, v in table.items() if k not in gone}
    usable = lambda segs: [s for s in segs if s.video_id in table]  # noqa: E731
    counts = {
        "train_segments": len(train),
        "val_segments": len(val),
        "val_unseen_action_segments": report.dropped_segments,
        "val_unseen_actions": report.dropped_actions,
        "val_unseen_participants": sorted(sets.unseen_participants),
        "val_unseen_participant_segments": sum(s.participant_id in sets.unseen_participants for s in val),
        **_tail_counts(sets, vocab),
        "protocol_lists": dict(sets.source),
        "dropped_no_video": len(train) + len(val) - len(usable(train)) - len(usable(val)),
        "skipped_videos": len(skipped),
        "skipped_files": skipped,
        "num_verbs": vocab.num_verbs,
        "num_nouns": vocab.num_nouns,
        "num_actions": len(vocab.actions),
    }
    val_all = val
    train, val = usable(train), usable(val)
    if not train:
        raise ValueError(f"no training segment has a readable video (skipped: {skipped[:5]})")
    if not val:
        raise ValueError(f"no validation segment has a readable video (skipped: {skipped[:5]})")
    log.info("annotations: %d train, %d val (%d of an action unseen in training: misses in the action metrics)",
             len(train), len(val_all), report.dropped_segments)
    return PreparedData(cfg, train, val, vocab, table, paths, counts, val_all, sets)


def _tail_counts(sets: ProtocolSets, vocab: ActionVocab) -> dict[str, int]:
    if "verb" in vocab.outputs:
        return {"tail_verbs": len(sets.tail_verbs), "tail_nouns": len(sets.tail_nouns)}
    return {"tail_actions": len(sets.tail_labels)}


def segment_targets(vocab: ActionVocab, segments: list[Segment]) -> dict[str, torch.Tensor]:
    out = {name: torch.full((len(segments),), -1, dtype=torch.long) for name in vocab.outputs}
    for i, s in enumerate(segments):
        t = vocab.targets(s)
        if t is not None:
            for name, c in t.items():
                out[name][i] = c
    return out
