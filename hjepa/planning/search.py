"""Sampling-based search over action sequences: the cross-entropy method and MPPI.

Both keep a distribution over sequences of ``length`` actions, sample ``samples`` sequences,
score them all with one call of the cost (so a world model imagines them as one batch) and
move the distribution towards the good ones, ``iterations`` times. The planning compute per
call is therefore ``samples * iterations`` imagined sequences, the same for every planner
built with the same numbers.

- **CEM** (Rubinstein 1999; the planner of PlaNet, DINO-WM, V-JEPA 2-AC) refits the
  distribution to the ``elites`` cheapest samples.
- **MPPI** (Williams et al. 2017) moves it to the average of all samples weighted by
  ``exp(-(cost - min cost) / temperature)``.

Discrete actions get one categorical distribution per position of the sequence, continuous
actions one Gaussian per position and dimension, clipped to the box. Each call returns the
cheapest sequence it scored (not the distribution's mode, which may never have been scored), and
a warm start (``init``: the previous plan shifted by the actions taken) is sampled beside the
distribution, so a replanning agent does not lose a good plan to sampling noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["CEM", "MPPI", "Box", "Discrete", "Plan"]

Cost = Callable[[Tensor], Tensor]  # [N, L] ids / [N, L, A] vectors -> [N] costs (lower is better)


@dataclass(frozen=True)
class Discrete:
    """Actions ``0 .. n - 1``."""

    n: int

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"Discrete(n={self.n}): need n >= 1")


@dataclass(frozen=True)
class Box:
    """Continuous actions of ``dim`` numbers, each in ``[low, high]``."""

    dim: int
    low: float = -1.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.dim < 1 or not self.low < self.high:
            raise ValueError(f"Box(dim={self.dim}, low={self.low}, high={self.high}): need dim >= 1, low < high")


@dataclass
class Plan:
    """What a search returns.

    Attributes:
        actions: the cheapest sequence scored, long [L] or float [L, A].
        cost: its cost.
        evaluations: sequences scored (``samples * iterations``).
        best_per_iteration: the cheapest cost after each iteration (non-increasing).
    """

    actions: Tensor
    cost: float
    evaluations: int
    best_per_iteration: list[float] = field(default_factory=list)


class _Search:
    """The shared loop; subclasses say how the distribution is refit from scored samples."""

    def __init__(self, space: Discrete | Box, length: int, samples: int = 64, iterations: int = 4,
                 seed: int = 0) -> None:
        if length < 1 or samples < 2 or iterations < 1:
            raise ValueError(f"length={length}, samples={samples}, iterations={iterations}: need length >= 1, "
                             "samples >= 2, iterations >= 1")
        self.space, self.length, self.samples, self.iterations = space, length, samples, iterations
        self.generator = torch.Generator().manual_seed(seed)

    # --- the distribution ------------------------------------------------------------------

    def _start(self, init: Tensor | None) -> dict[str, Tensor]:
        s, n = self.space, self.length
        if isinstance(s, Discrete):
            probs = torch.full((n, s.n), 1.0 / s.n)
            if init is not None:  # lean towards the previous plan, keep every action possible
                probs = 0.5 * probs + 0.5 * torch.nn.functional.one_hot(init, s.n).float()
            return {"probs": probs}
        mean = torch.full((n, s.dim), (s.low + s.high) / 2) if init is None else init.float().clone()
        return {"mean": mean, "std": torch.full((n, s.dim), (s.high - s.low) / 2)}

    def _sample(self, dist: dict[str, Tensor], count: int) -> Tensor:
        if isinstance(self.space, Discrete):
            return torch.multinomial(dist["probs"], count, replacement=True, generator=self.generator).T  # [N, L]
        eps = torch.randn((count, *dist["mean"].shape), generator=self.generator)
        return (dist["mean"] + dist["std"] * eps).clamp(self.space.low, self.space.high)  # [N, L, A]

    def _refit(self, dist: dict[str, Tensor], seqs: Tensor, costs: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def _check(self, init: Tensor | None) -> None:
        if init is None:
            return
        want = (self.length,) if isinstance(self.space, Discrete) else (self.length, self.space.dim)
        if tuple(init.shape) != want:
            raise ValueError(f"init of shape {tuple(init.shape)}: the plan has shape {want}")

    # --- the loop ----------------------------------------------------------------------------

    def plan(self, cost: Cost, init: Tensor | None = None) -> Plan:
        """Search for the sequence of ``length`` actions that ``cost`` scores lowest.

        Args:
            cost: ``[N, L]`` long (discrete) / ``[N, L, A]`` float sequences -> ``[N]`` costs.
            init: a sequence to start from (the previous plan, shifted): scored in the first round,
                after which the best sequence so far is carried into every round.
        """
        self._check(init)
        dist = self._start(init)
        best, best_cost, history = None, float("inf"), []
        for _ in range(self.iterations):
            seqs = self._sample(dist, self.samples - (1 if best is not None or init is not None else 0))
            keep = best if best is not None else init
            if keep is not None:
                seqs = torch.cat([keep[None].to(seqs.dtype), seqs])
            costs = cost(seqs).detach().float().reshape(-1).cpu()
            if costs.shape[0] != seqs.shape[0] or not torch.isfinite(costs).all():
                raise ValueError(f"the cost gave {tuple(costs.shape)} values for {seqs.shape[0]} sequences, "
                                 "or a non-finite one")
            i = int(costs.argmin())
            if costs[i] < best_cost:
                best, best_cost = seqs[i].clone(), float(costs[i])
            history.append(best_cost)
            dist = self._refit(dist, seqs, costs)
        return Plan(best, best_cost, self.samples * self.iterations, history)


class CEM(_Search):
    """Cross-entropy method.

    Args:
        space: ``Discrete(n)`` or ``Box(dim, low, high)``.
        length: actions per sequence.
        samples: sequences scored per iteration.
        elites: the cheapest this many refit the distribution (default: a tenth of ``samples``,
            PlaNet's share).
        iterations: refits per call.
        smoothing: weight of the new fit against the old distribution (1: replace it; a little
            of the old keeps a discrete search from settling on its first guess).
        min_std: continuous: the Gaussians' floor, so the search never stops exploring.
        seed: of the sampling generator (the global RNG is not touched).
    """

    def __init__(self, space: Discrete | Box, length: int, samples: int = 64, elites: int | None = None,
                 iterations: int = 4, smoothing: float = 0.9, min_std: float = 0.05, seed: int = 0) -> None:
        super().__init__(space, length, samples, iterations, seed)
        elites = max(1, samples // 10) if elites is None else elites
        if not 1 <= elites <= samples or not 0 < smoothing <= 1:
            raise ValueError(f"elites={elites}, smoothing={smoothing}: need 1 <= elites <= samples, 0 < smoothing <= 1")
        self.elites, self.smoothing, self.min_std = elites, smoothing, min_std

    def _refit(self, dist: dict[str, Tensor], seqs: Tensor, costs: Tensor) -> dict[str, Tensor]:
        top = seqs[costs.argsort()[: self.elites]]
        a = self.smoothing
        if isinstance(self.space, Discrete):
            freq = torch.nn.functional.one_hot(top, self.space.n).float().mean(0)  # [L, n]
            probs = (1 - a) * dist["probs"] + a * freq
            probs = probs + 1e-3  # every action keeps a chance
            return {"probs": probs / probs.sum(-1, keepdim=True)}
        mean = (1 - a) * dist["mean"] + a * top.mean(0)
        std = (1 - a) * dist["std"] + a * top.std(0, unbiased=False)
        return {"mean": mean, "std": std.clamp(min=self.min_std)}


class MPPI(_Search):
    """Model-predictive path integral control: a cost-weighted average of every sample.

    Args:
        space, length, samples, iterations, seed: as for :class:`CEM`.
        temperature: lambda in ``exp(-(cost - min) / lambda)``; costs are first divided by their
            spread in the round, so it is unit-free (small: greedy, large: plain average).
        noise: continuous: the sampling Gaussians' std as a fraction of the box's half-width
            (MPPI keeps it fixed; CEM refits it).
    """

    def __init__(self, space: Discrete | Box, length: int, samples: int = 64, iterations: int = 4,
                 temperature: float = 0.1, noise: float = 0.5, seed: int = 0) -> None:
        super().__init__(space, length, samples, iterations, seed)
        if not temperature > 0 or not noise > 0:
            raise ValueError(f"temperature={temperature}, noise={noise}: both must be > 0")
        self.temperature, self.noise = temperature, noise

    def _start(self, init: Tensor | None) -> dict[str, Tensor]:
        dist = super()._start(init)
        if isinstance(self.space, Box):
            dist["std"] = torch.full_like(dist["std"], self.noise * (self.space.high - self.space.low) / 2)
        return dist

    def _refit(self, dist: dict[str, Tensor], seqs: Tensor, costs: Tensor) -> dict[str, Tensor]:
        spread = (costs.max() - costs.min()).clamp(min=1e-12)
        w = torch.softmax(-(costs - costs.min()) / (spread * self.temperature), dim=0)  # [N]
        if isinstance(self.space, Discrete):
            freq = (w[:, None, None] * torch.nn.functional.one_hot(seqs, self.space.n).float()).sum(0)
            probs = 0.2 * dist["probs"] + 0.8 * freq + 1e-3
            return {"probs": probs / probs.sum(-1, keepdim=True)}
        return {"mean": (w[:, None, None] * seqs).sum(0), "std": dist["std"]}
