"""MiniGrid / BabyAI environments as the planner's world: rendering and goals.

Frames are rendered exactly as ``datasets/babyai/make_dataset.py`` records them (that script
renders with :class:`Rendering` from here), so a model pretrained on the recipe's videos sees the
same pictures when it plans, provided the planner is given the recording's settings. A goal
comes from a recorded episode: the environment is reset with the episode's seed and the bot's recorded actions are replayed for ``k`` steps; the state
reached is the goal (its picture for the cost, the agent's cell for success), ``k`` primitive
steps from the start by the bot's own path.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GoalTask", "Rendering", "agent_state", "goal_tasks", "make_env", "render_frame", "reset"]


@dataclass(frozen=True)
class Rendering:
    """How an environment state becomes a frame.

    Attributes:
        view: ``full`` (the whole grid) or ``agent`` (the agent's own 7x7 view).
        size: side of the square frame, pixels.
        highlight: shade the cells the agent sees (minigrid's default). The shaded cone moves
            with every turn and step and covers many cells, so it dominates how far two frames
            are apart, and the distance to a goal stops saying how near it is (``hjepa plan
            --planners '[]'`` measures this: ``cost_progress``). Off for goal reaching.
    """

    view: str = "full"
    size: int = 64
    highlight: bool = True

    def __post_init__(self) -> None:
        if self.view not in ("full", "agent"):
            raise ValueError(f"view={self.view!r}: must be full or agent")
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size {self.size}: need an even number >= 16 (H.264 yuv420p)")

    def frame(self, env: Any) -> np.ndarray:
        return render_frame(env, self.view, self.size, self.highlight)


def render_frame(env: Any, view: str, size: int, highlight: bool = True) -> np.ndarray:
    """uint8 [size, size, 3]: the environment's own rendering (whole grid or agent view, with or
    without the shading of what the agent sees), padded square and resized.

    Tiles are drawn at about twice the output resolution and box-filtered down, which keeps
    one-tile objects legible at 64 px.
    """
    from PIL import Image

    u = env.unwrapped
    tiles = u.agent_view_size if view == "agent" else max(u.width, u.height)
    tile_size = max(4, math.ceil(2 * size / tiles))
    img = u.get_frame(highlight=highlight, tile_size=tile_size, agent_pov=view == "agent")
    h, w, _ = img.shape
    side = max(h, w)
    square = np.zeros((side, side, 3), np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    square[top:top + h, left:left + w] = img
    return np.array(Image.fromarray(square).resize((size, size), Image.BOX))  # a writable copy: torch reads it


def make_env(env_id: str) -> Any:
    """A gymnasium env with minigrid's levels registered (refuses cleanly without minigrid)."""
    try:
        import gymnasium as gym
        import minigrid  # noqa: F401  (registers the MiniGrid and BabyAI levels)
    except ImportError as err:
        raise ImportError("planning in MiniGrid needs minigrid: pip install minigrid") from err
    return gym.make(env_id, render_mode="rgb_array")


def agent_state(env: Any) -> tuple[int, int, int]:
    """(x, y, direction) of the agent: what a goal state asks of it."""
    u = env.unwrapped
    return int(u.agent_pos[0]), int(u.agent_pos[1]), int(u.agent_dir)


def reset(env: Any, seed: int) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # BabyAI prints every rejected layout it samples
        env.reset(seed=seed)


@dataclass
class GoalTask:
    """One planning episode: start from ``env_seed``'s first state, reach ``goal_pos``.

    Attributes:
        video_id, env_id, env_seed: the recorded episode it comes from.
        goal_steps: primitive steps the bot took from the start to the goal.
        goal_pos: the agent's cell and heading (x, y, direction) in the goal state.
        goal_frame: uint8 [H, W, 3], the goal state as rendered.
        path_frames: uint8 [goal_steps + 1, H, W, 3], the recorded states from the start to the
            goal: the gallery a video draws the hierarchical planner's subgoals from.
    """

    video_id: str
    env_id: str
    env_seed: int
    goal_steps: int
    goal_pos: tuple[int, int, int]
    goal_frame: np.ndarray
    path_frames: np.ndarray


def goal_tasks(data_dir: str | Path, split: str, count: int, steps: tuple[int, int], render: Rendering,
               seed: int = 0) -> list[GoalTask]:
    """``count`` goals ``steps[0]..steps[1]`` bot steps from the start of ``split``'s episodes.

    Episodes are taken in ``episodes.csv`` order (each once; those shorter than ``steps[0]`` are
    passed over), ``k`` drawn per episode from ``random.Random(seed)``. A replay that ends before
    its k-th action (the recording does not fit this minigrid) stops with the episode's id.
    """
    data_dir = Path(data_dir)
    lo, hi = steps
    if not 2 <= lo <= hi:  # a path of at least two states before the goal, for cost_progress
        raise ValueError(f"goal steps {steps}: need 2 <= low <= high")
    actions: dict[str, list[int]] = defaultdict(list)
    with open(data_dir / f"frame_actions_{split}.csv", newline="") as f:
        for row in csv.DictReader(f):
            actions[row["video_id"]].append(int(row["action"]))
    with open(data_dir / "episodes.csv", newline="") as f:
        episodes = [r for r in csv.DictReader(f) if r["split"] == split]
    rng = random.Random(seed)
    envs: dict[str, Any] = {}
    tasks = []
    for ep in episodes:
        if len(tasks) == count:
            break
        recorded = actions[ep["video_id"]][:-1]  # the last frame's is "done"
        if len(recorded) < lo:
            continue
        k = rng.randint(lo, min(hi, len(recorded)))
        env = envs.setdefault(ep["env"], make_env(ep["env"]))
        reset(env, int(ep["env_seed"]))
        start = agent_state(env)
        path = [render.frame(env)]
        for i, a in enumerate(recorded[:k], start=1):
            _, _, terminated, truncated, _ = env.step(a)
            path.append(render.frame(env))
            if (terminated or truncated) and i < k:
                raise ValueError(f"{ep['video_id']}: the replayed episode ended after {i} of its recorded "
                                 f"actions; was it recorded with another minigrid version?")
        pos = agent_state(env)
        if pos == start:
            continue  # the bot only turned back: no goal to reach
        tasks.append(GoalTask(ep["video_id"], ep["env"], int(ep["env_seed"]), k, pos, path[-1], np.stack(path)))
    for env in envs.values():
        env.close()
    if len(tasks) < count:
        raise ValueError(f"{data_dir}: only {len(tasks)} {split} episodes have a goal {lo}+ steps away; "
                         f"{count} asked for")
    return tasks
