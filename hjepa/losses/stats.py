"""Collapse and skill statistics, cheap enough to log every step.

- ``feature_std``: per-dimension std across samples (the first dim: clips), averaged over
  dimensions and positions; goes to 0 when every input maps to the same representation, even
  when that representation differs from token to token.
- ``effective_rank``: exp of the entropy of the normalised singular values (Roy & Vetterli
  2007); between 1 (a single direction, or none) and min(N, D). ``RunningRows`` keeps the rows
  of recent batches so the rank is taken on enough rows (one batch of level 2 has fewer rows
  than dimensions).
- ``copy_ratio``: prediction error divided by the error of predicting that step t+h looks
  like step t. Not a skill on its own: on pure noise a predictor of the mean target already
  scores about 1/sqrt(2).
- ``baseline_skill``: ``1 - error / min(baseline errors)`` against copy-the-present, the
  per-(slot, token) mean target and copy + slot offset: above 0 only when the prediction knows
  something none of them does.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def feature_std(x: torch.Tensor) -> torch.Tensor:
    """``x: [N, ..., D]`` -> scalar: std over the N samples of every (position, dimension), averaged.

    Positions (steps, tokens) are not samples: a model that maps every clip to the same
    token grid has std 0 here, however much its tokens differ from one another.
    """
    x = x.detach().float()
    if x.shape[0] < 2:
        return torch.zeros((), device=x.device)
    return x.reshape(x.shape[0], -1).std(dim=0).mean()


@torch.no_grad()
def effective_rank(x: torch.Tensor, max_rows: int = 2048, eps: float = 1e-12, rel_tol: float = 1e-5) -> torch.Tensor:
    """``x: [..., D]`` -> scalar effective rank of the centred ``[N, D]`` matrix.

    At most ``max_rows`` rows (evenly strided, so the value is deterministic) keep it cheap.
    Singular values below ``rel_tol`` times the rows' own scale are rounding, not directions:
    identical rows give rank 1, not the rank of their float noise.
    """
    x = x.detach().reshape(-1, x.shape[-1]).float()
    if x.shape[0] > max_rows:
        x = x[:: -(-x.shape[0] // max_rows)]
    scale = x.abs().max()
    x = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(x)
    s = torch.where(s > rel_tol * scale * max(x.shape) ** 0.5, s, torch.zeros_like(s))
    if not bool(s.any()):
        return torch.ones((), device=x.device)
    p = s / (s.sum() + eps)
    entropy = -(p * torch.log(p + eps)).sum()
    return entropy.exp()


class RunningRows(torch.nn.Module):
    """The last ``capacity`` rows ``[N, D]`` seen, for statistics that need more rows than a batch.

    The rows live in non-persistent buffers: they follow the module's device and dtype, stay
    out of ``state_dict`` (a statistic of past batches, not part of the model) and are written
    in place, so a checkpoint that saves every buffer resumes the logged rank exactly.

    Args:
        capacity: rows kept (oldest overwritten first); 4 * D is enough for a rank of D.
        dim: D.
    """

    def __init__(self, capacity: int, dim: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.register_buffer("rows", torch.zeros(capacity, dim), persistent=False)
        self.register_buffer("filled", torch.zeros((), dtype=torch.long), persistent=False)
        self.register_buffer("cursor", torch.zeros((), dtype=torch.long), persistent=False)

    @torch.no_grad()
    def add(self, rows: torch.Tensor) -> torch.Tensor:
        """Write ``rows [N, D]`` over the oldest and return the effective rank of what is kept (scalar)."""
        rows = rows.detach().to(self.rows.dtype)[-self.capacity :]
        n = rows.shape[0]
        idx = (self.cursor + torch.arange(n, device=self.rows.device)) % self.capacity
        self.rows[idx] = rows
        self.cursor.copy_((self.cursor + n) % self.capacity)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.capacity))
        return self.rank_of(self.rows[: int(self.filled)])

    def reset(self) -> None:
        self.filled.zero_()
        self.cursor.zero_()

    @staticmethod
    def rank_of(rows: torch.Tensor) -> torch.Tensor:
        return effective_rank(rows, max_rows=max(rows.shape[0], 1))


@torch.no_grad()
def slot_means(target: torch.Tensor, slots: int) -> torch.Tensor:
    """Mean target per (slot, token): ``target [B, S, Q, D]`` -> ``[slots, Q, D]`` (step s in slot s % slots)."""
    b, s, q, d = target.shape
    slot = torch.arange(s, device=target.device) % slots
    sums = torch.zeros(slots, q, d, device=target.device, dtype=torch.float32)
    sums.index_add_(0, slot, target.float().sum(0))
    counts = torch.bincount(slot, minlength=slots).clamp(min=1).to(sums) * b
    return sums / counts[:, None, None]


@torch.no_grad()
def baseline_skill(pred: torch.Tensor, target: torch.Tensor, pairs: torch.Tensor, slots: int = 1) -> torch.Tensor:
    """Skill of predictions against the best of three baselines on the same pairs: scalar.

    Args:
        pred: [B, P, Q, D] predictions of step t+j for ``pairs``.
        target: [B, S, Q, D] layer-normed targets of every step.
        pairs: long [P, 2] (context end t, horizon j).
        slots: steps per level-1 window (the slot of step s is s % slots).

    Baselines (mean L1 each): copy-the-present ``target[t]``; the per-(slot, token) mean target
    of this batch ``m[slot(t+j)]``; copy + slot offset ``target[t] + m[slot(t+j)] - m[slot(t)]``.
    The batch mean includes the very targets it is scored on, which only flatters the baseline.
    """
    t, tj = pairs[:, 0], pairs.sum(1)
    future = target[:, tj].float()
    present = target[:, t].float()
    means = slot_means(target, slots)
    m_future, m_present = means[tj % slots], means[t % slots]  # [P, Q, D]
    err = (pred.detach().float() - future).abs().mean()
    baselines = torch.stack([
        (present - future).abs().mean(),
        (m_future - future).abs().mean(),
        (present + m_future - m_present - future).abs().mean(),
    ])
    return 1.0 - err / baselines.min().clamp_min(1e-8)


@torch.no_grad()
def copy_ratio(pred: torch.Tensor, target: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """L1(pred, target) / L1(present, target) for tensors of one shape: scalar."""
    err = (pred.detach().float() - target.float()).abs().mean()
    base = (present.float() - target.float()).abs().mean()
    return err / base.clamp_min(1e-8)
