"""Score a model on batches: every level, every horizon, against baselines, with retrieval.

:func:`score_model` walks batches of the data contract (``clip``, ``frame_index``, ``fps``
and, for synthetic data, ``activity`` / ``positions``), runs ``model.predict`` once per batch
and ``model.encode`` when level 1 must be rolled out, and accumulates:

- per (level, horizon): L1 / cosine of prediction vs layer-normed target, the same for three
  baselines (copy-the-present, the per-(slot, token) mean target, copy + slot offset) and the
  skill against the best of them, and retrieval of the true future among every step of every
  clip in the batch except the query's own present step (``retrieval``), and among the other
  clips' steps at the same time (``retrieval_clips``: content, not time), each beside the same
  retrieval by copying the present;
- per level >= 2 and horizon: retrieval by level 1 rolled out to the same time, among the
  level-1 steps that end where this level's steps end (as many candidates, same times);
- per level: collapse statistics of context and target tokens, and how much of the target
  variance the step's slot in its window explains;
- per level: frozen step features and their ground-truth factors for probes.

A *slot* is where a step sits in its level-1 window (step s of a level with n steps per window
is in slot s % n; levels whose steps span a window have one slot). Targets that carry their
slot would let a predictor that knows the step index beat copy-the-present without knowing
anything about the future; the slot baselines take that away.

The mean-target baselines need the mean targets first, so a cheap first pass (``encode``
only) computes them; everything else is one pass. ``shuffle_future`` scores every clip's
predictions against the *next* clip's future (a control where nothing can be predicted).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from hjepa.eval.metrics import collapse_stats, cosine_similarity, retrieval_ranks, retrieval_chance

BASELINES = ("copy", "mean", "copy_offset")  # names of ``{key}/{name}_l1``; ``best_baseline`` is one of them

__all__ = ["ProbeData", "ScoreResult", "score_model", "step_labels"]


@dataclass
class ProbeData:
    """Frozen step features of one level and the factors they may hold.

    Attributes:
        features: ``[N, Q, D]`` layer-normed target tokens of N steps (float16 to save memory).
        groups: ``long [N]`` clip id of every step (probe splits never cut a clip).
        factors: name -> ``long [N]`` (classes) or ``float [N, P]`` (regression targets).
    """

    features: list[Tensor] = field(default_factory=list)
    groups: list[Tensor] = field(default_factory=list)
    factors: dict[str, list[Tensor]] = field(default_factory=lambda: defaultdict(list))

    def cat(self) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        return torch.cat(self.features), torch.cat(self.groups), {k: torch.cat(v) for k, v in self.factors.items()}


@dataclass
class ScoreResult:
    """What :func:`score_model` found.

    Attributes:
        metrics: flat ``{key: float}``; keys are documented in :func:`hjepa.eval.evaluate.run_evaluate`.
        probe_data: one :class:`ProbeData` per level.
        num_clips: clips scored.
        skipped: inputs the loader dropped (sum of the batches' ``skipped``).
    """

    metrics: dict[str, float]
    probe_data: list[ProbeData]
    num_clips: int
    skipped: int


def step_labels(batch: dict[str, Tensor], end_frames: Tensor) -> dict[str, Tensor]:
    """Ground-truth factors at the last frame of every step.

    Args:
        batch: a loader batch; uses ``activity [B, T]``, ``positions [B, T, O, 2]`` and
            ``label [B]`` when present.
        end_frames: ``long [S]`` last clip frame of every step.
    Returns:
        name -> ``[B, S]`` (``activity``, ``label``: long) or ``[B, S, O*2]`` (``position``: float).
    """
    out: dict[str, Tensor] = {}
    end = end_frames.cpu()
    if "activity" in batch:
        out["activity"] = batch["activity"].cpu()[:, end].long()
    if "positions" in batch:
        pos = batch["positions"].cpu()[:, end].float()  # [B, S, O, 2]
        out["position"] = pos.flatten(2)
    if "label" in batch and (batch["label"] >= 0).all():
        lab = batch["label"].cpu().long()
        out["label"] = lab[:, None].expand(-1, len(end)).clone()
    return out


class _Acc:
    """Running sums of named scalars."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, key: str, values: Tensor) -> None:
        self.sums[key] += float(values.double().sum())
        self.counts[key] += int(values.numel())

    def mean(self, key: str) -> float:
        return self.sums[key] / max(self.counts[key], 1)


def _seconds_per_frame(batch: dict[str, Tensor], device: torch.device) -> Tensor:
    """``[B, T]`` time in seconds of every clip frame (from ``frame_index`` and ``fps``)."""
    fps = batch["fps"].to(device).double().clamp(min=1e-6)
    return batch["frame_index"].to(device).double() / fps[:, None]


@torch.no_grad()
def score_model(
    model: torch.nn.Module,
    batches: Callable[[], Iterable[dict[str, Tensor]]],
    to_input: Callable[[Tensor], Tensor],
    device: torch.device | str = "cpu",
    similarity: str = "l1",
    rollout_level1: bool = True,
    probe_max_steps: int = 4000,
    collapse_max_rows: int = 8192,
    shuffle_future: bool = False,
    shuffle_actions: bool = False,
) -> ScoreResult:
    """Score ``model`` on every batch ``batches()`` yields (called twice: mean pass, main pass).

    Args:
        model: an ``HJEPA`` (``predict``, ``encode``, ``levels``, ``config``).
        batches: a callable that returns a fresh iterable of loader batches.
        to_input: ``uint8 [B, T, H, W, C]`` on ``device`` -> model input ``float [B, C, T, H, W]``.
        similarity: retrieval similarity, ``l1`` or ``cosine``.
        rollout_level1: also score level 1 rolled out to every higher level's horizons.
        probe_max_steps: keep at most this many steps per level for probes (the first ones
            in data order; the rest are not kept).
        collapse_max_rows: rows kept per level for the effective rank.
        shuffle_future: score each clip's predictions against the targets of the next clip in
            its batch (the copy baseline keeps the clip's own present): a control, skill ~ 0.
        shuffle_actions: an action-conditioned model predicts each clip from the next clip's
            actions (a control: what the actions add must vanish).

    Batches with ``actions`` (long [B, T]) give them to the model's level 1 (predictions and
    level 1's rollout).
    """
    device = torch.device(device)
    model.eval().to(device)
    num_levels = model.num_levels
    horizons = [lv.horizon for lv in model.config.levels]
    slots = [model.window_slots(k) for k in range(num_levels)]

    # Pass 1: the mean layer-normed target per (slot, token) of every level (two baselines) and
    # the sums that say how much of the target variance slots explain.
    moments = [_TargetMoments(n) for n in slots]
    for batch in batches():
        encs = model.encode(to_input(batch["clip"].to(device)))
        for k, enc in enumerate(encs):
            moments[k].add(enc.target)
    if moments[0].count == 0:
        raise ValueError("evaluation got no clips: every input was skipped or the data set is empty")
    slot_mean = [m.slot_means() for m in moments]  # [slots, Q, D] per level

    acc = _Acc()
    probe = [ProbeData() for _ in range(num_levels)]
    ctx_rows: list[list[Tensor]] = [[] for _ in range(num_levels)]
    tgt_rows: list[list[Tensor]] = [[] for _ in range(num_levels)]
    token_stats = [[0.0, None, None] for _ in range(num_levels)]  # count, sum, sumsq per dim
    num_clips, skipped, clip_offset = 0, 0, 0
    grid_hw = None

    for batch in batches():
        clip = batch["clip"].to(device)
        x = to_input(clip)
        b = clip.shape[0]
        if shuffle_future and b < 2:
            continue  # a clip alone has no other clip's future to be scored against
        times = _seconds_per_frame(batch, device)  # [B, T]
        actions = batch.get("actions")
        if actions is not None:
            actions = actions.to(device)
            if shuffle_actions:
                if b < 2:
                    continue
                actions = actions.roll(-1, dims=0)
        # Context tokens: for collapse statistics and as the start of level 1's rollout.
        encs = model.encode(x)
        preds = model.predict(x, encodings=encs, actions=actions)
        if grid_hw is None:
            grid_hw = model.patch_grid(x.shape)
        for k, (p, enc) in enumerate(zip(preds, encs)):
            pre = f"level{k + 1}"
            _, s_k, h_k, q, d = p.pred.shape
            tgt_all = p.present  # [B, S, Q, D], layer-normed target of every step
            future_all = tgt_all.roll(-1, dims=0) if shuffle_future else tgt_all
            keys = future_all.reshape(b * s_k, q * d)
            step_slot = torch.arange(s_k, device=device) % slots[k]
            if s_k > 1:
                ends = p.context_end_frames
                acc.add(f"{pre}/step_s", times[:, ends[1:]] - times[:, ends[:-1]])
            for j in range(h_k):
                valid_s = torch.nonzero(p.valid[:, j]).flatten()  # context ends with a future in the clip
                if len(valid_s) == 0:
                    continue
                key = f"{pre}/h{j + 1}"
                pred = p.pred[:, valid_s, j]  # [B, V, Q, D]
                target = future_all[:, valid_s + j + 1]
                present = tgt_all[:, valid_s]
                m_future = slot_mean[k][step_slot[valid_s + j + 1]][None]  # [1, V, Q, D]
                m_present = slot_mean[k][step_slot[valid_s]][None]
                flat = lambda t: t.expand(b, -1, -1, -1).reshape(-1, q, d)  # noqa: E731 - [B*V, Q, D]
                l1 = lambda a: (flat(a) - flat(target)).abs().flatten(1).mean(1)  # noqa: E731 - [B*V]
                acc.add(f"{key}/l1", l1(pred))
                acc.add(f"{key}/cosine", cosine_similarity(flat(pred), flat(target)))
                acc.add(f"{key}/copy_l1", l1(present))
                acc.add(f"{key}/copy_cosine", cosine_similarity(flat(present), flat(target)))
                acc.add(f"{key}/mean_l1", l1(m_future))
                acc.add(f"{key}/copy_offset_l1", l1(present + m_future - m_present))
                t_end = p.target_end_frames[valid_s, j]
                acc.add(f"{key}/horizon_s", times[:, t_end] - times[:, p.context_end_frames[valid_s]])

                # Retrieval among all steps of all clips in the batch but the query's present step.
                bi = torch.arange(b, device=device)[:, None].expand(-1, len(valid_s))
                pos = (bi * s_k + (valid_s + j + 1)[None]).reshape(-1)
                own = (bi * s_k + valid_s[None]).reshape(-1)
                cand = torch.ones(len(pos), b * s_k, dtype=torch.bool, device=device)
                cand[torch.arange(len(pos)), own] = False
                same_time = _same_time_candidates(b, s_k, (valid_s + j + 1)[None].expand(b, -1).reshape(-1))
                for name, query in (("retrieval", pred), ("copy_retrieval", present)):
                    query = query.reshape(-1, q * d)
                    _add_retrieval(acc, f"{key}/{name}", query, keys, pos, cand, similarity)
                    _add_retrieval(acc, f"{key}/{name}_clips", query, keys, pos, same_time, similarity)

                if rollout_level1 and k > 0 and not shuffle_future:
                    _add_level1_rollout(acc, key, model, preds[0], encs[0], p, valid_s, j + 1, grid_hw, similarity,
                                        actions)

            # Collapse statistics: per-dimension std across clips at every (step, token) position
            # (exact, running sums) and effective rank of step embeddings (mean over Q).
            _add_sample_stats(token_stats[k], enc.context)
            ctx_rows[k].append(enc.context.mean(2).reshape(-1, enc.context.shape[-1]).float().cpu())
            tgt_rows[k].append(tgt_all.mean(2).reshape(-1, d).float().cpu())

            # Probe features: the target tokens of every step with the factors at its last frame.
            labels = step_labels(batch, p.context_end_frames)
            feats = tgt_all.reshape(b * s_k, q, d)
            groups = (clip_offset + torch.arange(b))[:, None].expand(-1, s_k).reshape(-1)
            room = probe_max_steps - sum(len(f) for f in probe[k].features)
            keep = torch.arange(min(room, b * s_k))
            if len(keep):
                probe[k].features.append(feats[keep.to(device)].half().cpu())
                probe[k].groups.append(groups[keep])
                for name, lab in labels.items():
                    probe[k].factors[name].append(lab.reshape(b * s_k, *lab.shape[2:])[keep])
        num_clips += b
        clip_offset += b
        skipped += int(batch["skipped"]) if "skipped" in batch else 0

    metrics: dict[str, float] = {}
    for name in sorted(acc.sums):
        metrics[name] = acc.mean(name)
    best_baselines: dict[str, str] = {}
    for k in range(num_levels):
        pre = f"level{k + 1}"
        for j in range(horizons[k]):
            key = f"{pre}/h{j + 1}"
            if f"{key}/l1" not in acc.sums:
                continue
            metrics[f"{key}/count"] = float(acc.counts[f"{key}/l1"])
            metrics[f"{key}/copy_ratio"] = _ratio(metrics[f"{key}/l1"], metrics[f"{key}/copy_l1"])
            metrics[f"{key}/mean_ratio"] = _ratio(metrics[f"{key}/l1"], metrics[f"{key}/mean_l1"])
            best = min(BASELINES, key=lambda name: metrics[f"{key}/{name}_l1"])
            best_baselines[f"{key}/best_baseline"] = best
            metrics[f"{key}/best_baseline_l1"] = metrics[f"{key}/{best}_l1"]
            metrics[f"{key}/skill"] = 1.0 - _ratio(metrics[f"{key}/l1"], metrics[f"{key}/{best}_l1"])
        metrics.update(moments[k].variance_fractions(pre))
        if token_stats[k][0] >= 2:
            n, s1, s2 = token_stats[k]
            std = ((s2 / n - (s1 / n) ** 2).clamp(min=0) * n / (n - 1)).sqrt()
            metrics[f"{pre}/context_std_mean"] = float(std.mean())
            metrics[f"{pre}/context_std_min"] = float(std.min())
        for which, rows in (("context", ctx_rows[k]), ("target", tgt_rows[k])):
            allrows = torch.cat(rows)
            if len(allrows) > collapse_max_rows:
                allrows = allrows[:: -(-len(allrows) // collapse_max_rows)]
            cs = collapse_stats(allrows)
            metrics[f"{pre}/{which}_eff_rank"] = cs.eff_rank
            metrics[f"{pre}/{which}_eff_rank_ratio"] = cs.eff_rank_ratio
            metrics[f"{pre}/{which}_step_std_mean"] = cs.std_mean
    metrics.update(best_baselines)  # type: ignore[arg-type] - the one string per (level, horizon)
    return ScoreResult(metrics=metrics, probe_data=probe, num_clips=num_clips, skipped=skipped)


class _TargetMoments:
    """Running sums of a level's layer-normed targets per (slot, token), for the slot baselines
    and for the share of target variance that slots explain."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.sum: Tensor | None = None  # [slots, Q, D] float64
        self.per_slot = torch.zeros(slots, dtype=torch.float64)  # target tokens counted per (slot, token)
        self.sumsq = 0.0
        self.count = 0  # steps seen

    def add(self, target: Tensor) -> None:
        """target: [B, S, Q, D]."""
        b, s, q, d = target.shape
        slot = torch.arange(s, device=target.device) % self.slots
        x = target.double()
        sums = torch.zeros(self.slots, q, d, dtype=torch.float64, device=target.device).index_add_(0, slot, x.sum(0))
        self.sum = sums.cpu() if self.sum is None else self.sum + sums.cpu()
        self.per_slot += torch.bincount(slot.cpu(), minlength=self.slots).double() * b
        self.sumsq += float(x.square().sum())
        self.count += b * s

    def slot_means(self) -> Tensor:
        """[slots, Q, D] mean target per (slot, token) (a slot never seen gets the overall mean)."""
        n = self.per_slot[:, None, None]
        overall = self.sum.sum(0) / self.per_slot.sum()
        return torch.where(n > 0, self.sum / n.clamp(min=1), overall).float()

    def variance_fractions(self, pre: str) -> dict[str, float]:
        """Shares of the total target variance (over steps, tokens and dimensions) explained by:
        ``{pre}/target_slot_token_var`` the (slot, token) cell means; ``{pre}/target_token_var``
        the token means alone; ``{pre}/target_slot_var`` their difference, what the slot adds."""
        n_slot = self.per_slot  # [slots]
        q = self.sum.shape[1]
        total_n = float(n_slot.sum()) * q  # token vectors counted
        grand = self.sum.sum((0, 1)) / total_n  # [D]
        ss_total = self.sumsq - total_n * float(grand.square().sum())
        cell = self.sum / n_slot.clamp(min=1)[:, None, None]  # [slots, Q, D]
        ss_cell = float((n_slot[:, None, None] * (cell - grand).square()).sum())
        token = self.sum.sum(0) / float(n_slot.sum())  # [Q, D]
        ss_token = float(n_slot.sum()) * float((token - grand).square().sum())
        if ss_total <= 1e-12:
            return {}
        return {f"{pre}/target_slot_token_var": ss_cell / ss_total, f"{pre}/target_token_var": ss_token / ss_total,
                f"{pre}/target_slot_var": (ss_cell - ss_token) / ss_total}


def _ratio(num: float, den: float) -> float:
    return num / den if den > 1e-12 else 1.0


def _add_retrieval(acc: _Acc, key: str, queries: Tensor, keys: Tensor, positive: Tensor, cand: Tensor,
                   similarity: str) -> None:
    ranks = retrieval_ranks(queries, keys, positive, similarity, cand).double()
    n_cand = (cand | torch.nn.functional.one_hot(positive, cand.shape[1]).bool()).sum(1)
    acc.add(f"{key}_top1", (ranks == 1).double())
    acc.add(f"{key}_mrr", 1.0 / ranks)
    top1, mrr = retrieval_chance(n_cand.cpu())
    acc.add(f"{key}_chance_top1", torch.full((len(ranks),), top1, dtype=torch.float64))
    acc.add(f"{key}_chance_mrr", torch.full((len(ranks),), mrr, dtype=torch.float64))


def _add_level1_rollout(acc: _Acc, key: str, model: Any, p1: Any, enc1: Any, pk: Any, valid_s: Tensor,
                        horizon: int, grid_hw: tuple[int, int] | None, similarity: str,
                        actions: Tensor | None = None) -> None:
    """Level 1 rolled out to level k's horizon, scored among matched level-1 candidates.

    For level-k context end s (last frame e_s) and horizon j, level 1 predicts from its step
    that ends at e_s the step that ends at level k's target end; candidates are the level-1
    steps of the batch that end where level-k steps end, minus the present one.
    """
    b, s1 = p1.present.shape[:2]
    ends1 = p1.context_end_frames  # [S1] last frame of each level-1 step
    lookup = {int(e): i for i, e in enumerate(ends1.tolist())}
    aligned = [lookup.get(int(e)) for e in pk.context_end_frames.tolist()]  # level-1 step at each level-k end
    if any(a is None for a in aligned):
        return  # level-k steps do not end on level-1 step ends (cannot happen for integer strides)
    aligned_t = torch.tensor(aligned, device=p1.present.device)
    ratio = pk.step_frames // p1.step_frames
    queries, positives, owns = [], [], []
    sk = pk.present.shape[1]
    for s in valid_s.tolist():
        t1 = aligned[s]
        pred = model.rollout_steps(enc1.context, 0, t1, horizon * ratio, grid_hw, actions=actions)[:, -1]  # causal
        queries.append(pred.reshape(b, -1))
        positives.append(torch.arange(b, device=pred.device) * sk + s + horizon)
        owns.append(torch.arange(b, device=pred.device) * sk + s)
    keys = p1.present[:, aligned_t].reshape(b * sk, -1)  # [B*Sk, Q1*D1]
    q = torch.stack(queries, 1).reshape(b * len(valid_s), -1)
    pos = torch.stack(positives, 1).reshape(-1)
    own = torch.stack(owns, 1).reshape(-1)
    cand = torch.ones(len(pos), b * sk, dtype=torch.bool, device=q.device)
    cand[torch.arange(len(pos)), own] = False
    _add_retrieval(acc, f"{key}/level1_rollout_retrieval", q, keys, pos, cand, similarity)
    same_time = _same_time_candidates(b, sk, pos % sk)
    _add_retrieval(acc, f"{key}/level1_rollout_retrieval_clips", q, keys, pos, same_time, similarity)


def _same_time_candidates(b: int, s: int, target_step: Tensor) -> Tensor:
    """``bool [N, B*S]``: for each query, the steps of every clip at its target's step index.

    Ranking among these asks whether the prediction carries *this clip's* content; the time
    position alone (which targets may encode) cannot pick the right one.
    """
    n = len(target_step)
    cand = torch.zeros(n, b * s, dtype=torch.bool, device=target_step.device)
    cols = torch.arange(b, device=target_step.device)[None, :] * s + target_step[:, None]  # [N, B]
    cand[torch.arange(n, device=cand.device)[:, None], cols] = True
    return cand


def _add_sample_stats(stats: list, tokens: Tensor) -> None:
    """Running count / sum / sum of squares over clips of ``tokens [B, S, Q, D]`` at every
    (step, token, dimension); clips of another length than the first are left out."""
    x = tokens.double()
    if stats[1] is not None and stats[1].shape != x.shape[1:]:
        return
    stats[0] += x.shape[0]
    s1, s2 = x.sum(0).cpu(), (x * x).sum(0).cpu()
    stats[1] = s1 if stats[1] is None else stats[1] + s1
    stats[2] = s2 if stats[2] is None else stats[2] + s2
