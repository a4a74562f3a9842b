"""Model-predictive control in a MiniGrid environment with a planner over level-1 actions.

Every environment step: encode the last frames seen, search for the plan whose imagined end is
closest to the goal's encoding, take its first action, and plan again from the new state with
the rest of the plan as the warm start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from hjepa.data.transforms import to_model_input
from hjepa.planning.cost import representation_cost
from hjepa.planning.minigrid_env import GoalTask, agent_state, make_env, render_frame, reset
from hjepa.planning.search import CEM, MPPI, Discrete
from hjepa.planning.world_model import LevelWorldModel

__all__ = ["EpisodeResult", "PlannerSettings", "run_flat_episode", "run_random_episode"]


@dataclass
class PlannerSettings:
    """How the flat planner searches (the same compute for every episode).

    Attributes:
        method: ``cem`` or ``mppi``.
        horizon_steps: level-1 steps a plan looks ahead (each ``F`` actions).
        samples, iterations: sequences imagined per round, rounds per environment step.
        actions: the environment's action ids the plan may use.
        over: which imagined steps the cost counts (``representation_cost``).
        context_frames: frames the world model sees (a multiple of the model's window; before the
            episode's first frame the first frame is repeated).
        seed: of the search's sampling.
    """

    method: Literal["cem", "mppi"] = "cem"
    horizon_steps: int = 4
    samples: int = 64
    iterations: int = 4
    actions: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 5])
    over: Literal["final", "min", "mean"] = "min"
    context_frames: int = 8
    seed: int = 0


@dataclass
class EpisodeResult:
    """One episode: ``success`` when the agent stood on the goal's cell, facing its way, within ``max_steps``."""

    task: GoalTask
    success: bool
    steps: int
    planning_s: list[float]
    frames: list[np.ndarray]


def _clip(frames: list[np.ndarray], count: int) -> torch.Tensor:
    """The last ``count`` frames as a normalised clip [1, C, T, H, W] (the first repeated before the start)."""
    seen = frames[-count:]
    seen = [seen[0]] * (count - len(seen)) + seen
    return to_model_input(torch.from_numpy(np.stack(seen))[None])


def run_flat_episode(world: LevelWorldModel, task: GoalTask, settings: PlannerSettings, max_steps: int,
                     size: int, view: str = "full", keep_frames: bool = False) -> EpisodeResult:
    """Plan with level 1 alone, replanning every step, until the goal cell or ``max_steps``."""
    env = make_env(task.env_id)
    reset(env, task.env_seed)
    frames = [render_frame(env, view, size)]
    goal = world.encode_goal(to_model_input(torch.from_numpy(task.goal_frame)[None, None])[:, :, 0])
    allowed = torch.tensor(settings.actions)
    length = settings.horizon_steps * world.step_frames
    kind = CEM if settings.method == "cem" else MPPI
    search = kind(Discrete(len(allowed)), length, samples=settings.samples, iterations=settings.iterations,
                  seed=settings.seed)

    def cost(seqs: torch.Tensor) -> torch.Tensor:
        return representation_cost(world.imagine(allowed[seqs]), goal, over=settings.over)

    init, planning, success, steps = None, [], False, 0
    for steps in range(1, max_steps + 1):
        world.observe(_clip(frames, settings.context_frames))
        t0 = time.perf_counter()
        plan = search.plan(cost, init)
        planning.append(time.perf_counter() - t0)
        env.step(int(allowed[plan.actions[0]]))
        frames.append(render_frame(env, view, size))
        if agent_state(env) == task.goal_pos:
            success = True
            break
        init = torch.cat([plan.actions[1:], plan.actions[-1:]])
    env.close()
    return EpisodeResult(task, success, steps, planning, frames if keep_frames else [])


def run_random_episode(task: GoalTask, actions: list[int], max_steps: int, seed: int) -> EpisodeResult:
    """The baseline: uniformly random actions from ``actions`` until the goal or ``max_steps``."""
    env = make_env(task.env_id)
    reset(env, task.env_seed)
    rng = np.random.default_rng(seed)
    success, steps = False, 0
    for steps in range(1, max_steps + 1):
        env.step(int(rng.choice(actions)))
        if agent_state(env) == task.goal_pos:
            success = True
            break
    env.close()
    return EpisodeResult(task, success, steps, [], [])
