"""Model-predictive control in a MiniGrid environment, flat or hierarchical.

Every environment step, flat: encode the last frames seen, search for the plan of primitive
actions whose imagined future comes closest to the goal's encoding, take its first action, and
plan again from the new state with the rest of the plan as the warm start.

Hierarchical: level 2 first searches macro-action plans whose imagined level-2 future comes
closest to the goal's level-2 encoding; the first step of the best one is the subgoal. Level 1
then searches primitive actions for one level-2 step (8 actions) whose imagined level-1 steps,
encoded by level 2, come closest to the subgoal (plus ``goal_weight`` times their level-1
distance to the goal, so the last metres are judged in level 1's detail). The first action is
taken, and both levels plan again. Both searches share the flat planner's budget: each gets
half of its imagined plans per step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from hjepa.data.transforms import to_model_input
from hjepa.planning.cost import representation_cost
from hjepa.planning.hierarchical import HierarchicalWorldModel
from hjepa.planning.minigrid_env import (
    GoalTask,
    Rendering,
    agent_state,
    make_env,
    reset,
)
from hjepa.planning.search import CEM, MPPI, Box, Discrete
from hjepa.planning.world_model import LevelWorldModel

__all__ = ["EpisodeResult", "PlannerSettings", "run_flat_episode", "run_hierarchical_episode", "run_random_episode"]


@dataclass
class PlannerSettings:
    """How the flat planner searches (the same compute for every episode).

    Attributes:
        method: ``cem`` or ``mppi``.
        horizon_steps: level-1 steps a plan looks ahead (each ``F`` actions).
        samples, iterations: sequences imagined per round, rounds per environment step.
        actions: the environment's action ids the plan may use.
        over: which imagined steps the cost counts (``representation_cost``).
        context_frames: frames the world model sees (a multiple of the model's window, and of
            level 2's step for the hierarchical planner; before the episode's first frame the
            first frame is repeated).
        top_horizon_steps: hierarchical: level-2 steps (macro-actions) a top-level plan looks ahead.
        goal_weight: hierarchical: weight of level 1's distance to the goal beside level 2's to
            the subgoal in the lower search's cost.
        seed: of the search's sampling.
    """

    method: Literal["cem", "mppi"] = "cem"
    horizon_steps: int = 4
    samples: int = 64
    iterations: int = 4
    actions: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 5])
    over: Literal["final", "min", "mean"] = "min"
    context_frames: int = 16
    top_horizon_steps: int = 4
    goal_weight: float = 1.0
    seed: int = 0

    def search(self, space: Discrete | Box, length: int, samples: int) -> CEM | MPPI:
        kind = CEM if self.method == "cem" else MPPI
        return kind(space, length, samples=samples, iterations=self.iterations, seed=self.seed)


@dataclass
class EpisodeResult:
    """One episode: ``success`` when the agent stood on the goal's cell, facing its way, within ``max_steps``."""

    task: GoalTask
    success: bool
    steps: int
    planning_s: list[float]
    frames: list[np.ndarray]
    subgoal_frames: list[np.ndarray] = field(default_factory=list)


def _clip(frames: list[np.ndarray], count: int) -> torch.Tensor:
    """The last ``count`` frames as a normalised clip [1, C, T, H, W] (the first repeated before the start)."""
    seen = frames[-count:]
    seen = [seen[0]] * (count - len(seen)) + seen
    return to_model_input(torch.from_numpy(np.stack(seen))[None])


def _act(env: Any, action: int, frames: list[np.ndarray], render: Rendering, task: GoalTask) -> bool:
    """Take ``action``, keep the frame it leads to; True when the agent now stands on the goal."""
    env.step(action)
    frames.append(render.frame(env))
    return agent_state(env) == task.goal_pos


def _shifted(actions: torch.Tensor) -> torch.Tensor:
    """The warm start after the first action is taken: the rest of the plan, its last action repeated."""
    return torch.cat([actions[1:], actions[-1:]])


def run_flat_episode(world: LevelWorldModel, task: GoalTask, settings: PlannerSettings, max_steps: int,
                     render: Rendering, keep_frames: bool = False) -> EpisodeResult:
    """Plan with level 1 alone, replanning every step, until the goal cell or ``max_steps``."""
    env = make_env(task.env_id)
    reset(env, task.env_seed)
    frames = [render.frame(env)]
    goal = world.encode_goal(to_model_input(torch.from_numpy(task.goal_frame)[None, None])[:, :, 0])
    allowed = torch.tensor(settings.actions)
    length = settings.horizon_steps * world.step_frames
    search = settings.search(Discrete(len(allowed)), length, settings.samples)

    def cost(seqs: torch.Tensor) -> torch.Tensor:
        return representation_cost(world.imagine(allowed[seqs]), goal, over=settings.over)

    init, planning, success, steps = None, [], False, 0
    for steps in range(1, max_steps + 1):
        world.observe(_clip(frames, settings.context_frames))
        t0 = time.perf_counter()
        plan = search.plan(cost, init)
        planning.append(time.perf_counter() - t0)
        if _act(env, int(allowed[plan.actions[0]]), frames, render, task):
            success = True
            break
        init = _shifted(plan.actions)
    env.close()
    return EpisodeResult(task, success, steps, planning, frames if keep_frames else [])


def run_hierarchical_episode(world: HierarchicalWorldModel, task: GoalTask, settings: PlannerSettings,
                             max_steps: int, render: Rendering, keep_frames: bool = False) -> EpisodeResult:
    """Plan subgoals with level 2 and actions to reach them with level 1, replanning every step.

    With ``keep_frames``, each step's subgoal is also drawn: as the state on the recorded path to
    the goal (``task.path_frames``) whose level-2 encoding is nearest to it (``subgoal_frames``).
    """
    env = make_env(task.env_id)
    reset(env, task.env_seed)
    frames = [render.frame(env)]
    goal1, goal2 = world.encode_goal(to_model_input(torch.from_numpy(task.goal_frame)[None, None])[:, :, 0])
    allowed = torch.tensor(settings.actions)
    top_samples = settings.samples // 2  # the two searches share the flat planner's samples
    top = settings.search(Box(world.macro_dim), settings.top_horizon_steps, max(2, top_samples))
    low_length = world.stride * world.low.step_frames  # the actions of one level-2 step
    low = settings.search(Discrete(len(allowed)), low_length, max(2, settings.samples - top_samples))

    def top_cost(macro: torch.Tensor) -> torch.Tensor:
        return representation_cost(world.imagine_macro(macro), goal2, over=settings.over)

    gallery = world.encode_states(to_model_input(torch.from_numpy(task.path_frames)[:, None])[:, :, 0]) \
        if keep_frames else None  # [P, Q2, D2]
    top_init = low_init = None
    planning, drawn, success, steps = [], [], False, 0
    for steps in range(1, max_steps + 1):
        world.observe(_clip(frames, settings.context_frames))
        t0 = time.perf_counter()
        top_plan = top.plan(top_cost, top_init)
        subgoal = world.imagine_macro(top_plan.actions[None])[0, 0]  # [Q2, D2] the next level-2 state
        if gallery is not None:
            drawn.append(task.path_frames[int(representation_cost(gallery[:, None], subgoal).argmin())])

        def low_cost(seqs: torch.Tensor, subgoal: torch.Tensor = subgoal) -> torch.Tensor:  # this step's subgoal
            imagined = world.low.imagine(allowed[seqs])  # [N, r, Q1, D1]
            to_sub = representation_cost(world.level2_of(imagined)[:, None], subgoal)
            return to_sub + settings.goal_weight * representation_cost(imagined, goal1, over=settings.over)

        plan = low.plan(low_cost, low_init)
        planning.append(time.perf_counter() - t0)
        if _act(env, int(allowed[plan.actions[0]]), frames, render, task):
            success = True
            break
        # Warm starts. The context always ends at the present, so the next subgoal is again one
        # level-2 step (8 frames) ahead of it: the macro plan is kept as it is (a heuristic, not a
        # shift by a whole step), the primitive plan shifts by the action taken. The box search may
        # pick macro-actions no sequence of 8 real actions makes; the subgoal is then only as good
        # as level 2's guess there.
        top_init = top_plan.actions
        low_init = _shifted(plan.actions)
    env.close()
    return EpisodeResult(task, success, steps, planning, frames if keep_frames else [], drawn)


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
