"""``hjepa plan``: goal-reaching episodes in a real MiniGrid / BabyAI environment.

Goals come from a recording of the BabyAI recipe (``datasets/babyai``): a test episode's state
``k`` bot steps after its start (:func:`hjepa.planning.minigrid_env.goal_tasks`), in two sets,
short (``short_steps``) and long (``long_steps``). The agent starts where the episode started
and plans with the checkpoint's action-conditioned levels until it stands on the goal's cell
facing its way, or ``2 * k + 10`` steps have passed: ``flat``, level 1 alone (CEM or MPPI over
primitive actions, replanning every step), and ``hierarchical``, level 2 planning subgoals with
macro-actions and level 1 the actions that reach them (``hjepa.planning.mpc``), with the same
number of imagined plans per step. Uniformly random actions under the same step limit are the
baseline.

A checkpoint whose level 2 takes no macro-actions gets ``success_rate/hierarchical`` null and a
line saying so.

Writes ``summary.json`` into ``out_dir`` and, for the first ``videos`` episodes of each set, an
MP4 of what the agent saw beside the goal (and, hierarchical, beside the subgoal level 2 chose,
drawn as the nearest recorded state on the way to the goal).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from statistics import mean

import numpy as np
import torch

from hjepa.data.transforms import to_model_input
from hjepa.errors import UserError
from hjepa.planning.cost import progress, representation_cost
from hjepa.planning.hierarchical import HierarchicalWorldModel
from hjepa.planning.minigrid_env import GoalTask, Rendering, goal_tasks
from hjepa.planning.mpc import (
    EpisodeResult,
    PlannerSettings,
    run_flat_episode,
    run_hierarchical_episode,
    run_random_episode,
)
from hjepa.planning.world_model import LevelWorldModel

log = logging.getLogger(__name__)

PLANNERS = ("flat", "hierarchical", "random")
NUM_ACTIONS = 7  # minigrid's action ids: left, right, forward, pickup, drop, toggle, done
HIERARCHICAL_UNAVAILABLE = ("not run: the checkpoint's level 2 takes no macro-actions, so it cannot plan "
                            "subgoals; only level 1 plans (flat)")


def run_plan(
    ckpt: str,
    data_dir: str = "data/babyai",
    out_dir: str = "runs/plan",
    split: str = "test",
    episodes: int = 50,
    short_steps: tuple[int, int] = (4, 10),
    long_steps: tuple[int, int] = (30, 60),
    planner: PlannerSettings | None = None,
    size: int = 64,
    view: str = "full",
    highlight: bool = False,
    videos: int = 2,
    seed: int = 0,
    device: str = "cpu",
    cpu_threads: int | None = None,
    planners: tuple[str, ...] = PLANNERS,
) -> dict:
    """Flat and hierarchical planning and the random baseline on short and long goals; writes ``summary.json``.

    Args:
        ckpt: a checkpoint whose level 1 takes actions (``configs/pretrain/babyai_actions.yaml``).
        data_dir: a folder written by ``datasets/babyai/make_dataset.py`` (``episodes.csv``,
            ``frame_actions_<split>.csv``).
        out_dir: where ``summary.json`` and the videos go.
        split: whose episodes give the goals (``test``: episodes no pretraining saw).
        episodes: episodes per goal set.
        short_steps, long_steps: goal distance ranges, in the bot's primitive steps.
        planner: search settings (``PlannerSettings``: method, horizon_steps, samples, ...).
        size, view, highlight: rendering, as the recording the checkpoint was pretrained on was made
            (``--size``, ``--view``, ``--no-highlight`` of make_dataset; the default is the action
            recipe's, unshaded); goals are rendered so too.
        videos: episodes per set saved as MP4 (agent's view | goal; hierarchical: agent's view |
            subgoal | goal).
        seed: goal draws and the random baseline (the searches draw from ``planner.seed``).
        device: where the world model runs.
        cpu_threads: torch threads (None: torch's default).
        planners: which of ``flat``, ``hierarchical``, ``random`` run; none gives only the
            ``cost_progress`` check of every goal, in seconds.
    """
    from hjepa.data.synthetic import encode_video
    from hjepa.loading import load_pretrained

    t_start = time.perf_counter()
    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    settings = planner or PlannerSettings()
    try:
        render = Rendering(view, size, highlight)
    except ValueError as err:
        raise UserError(str(err)) from None
    check_request(episodes, short_steps, long_steps, settings, planners)
    if not Path(ckpt).is_file():
        raise UserError(f"checkpoint {ckpt} does not exist")
    model = load_pretrained(ckpt, map_location=device)
    check_model(model, ckpt, settings, render, planners)
    model = model.to(device)
    worlds = {"flat": LevelWorldModel(model)}
    has_macro = model.num_levels >= 2 and model.levels[1].action_encoder is not None
    if has_macro:
        worlds["hierarchical"] = HierarchicalWorldModel(model)
    episode_fns = {"flat": run_flat_episode, "hierarchical": run_hierarchical_episode}
    runners = {name: (worlds[name], episode_fns[name]) for name in planners if name in worlds}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"ckpt": str(ckpt), "data_dir": str(data_dir), "split": split, "planner": settings.method,
                     "rendering": {"view": view, "size": size, "highlight": highlight},
                     "imagined_plans_per_step": settings.samples * settings.iterations,
                     "planner_settings": asdict(settings), "seed": seed, "videos": []}
    if "hierarchical" in planners and not has_macro:
        summary.update({"success_rate/hierarchical": None, "hierarchical": HIERARCHICAL_UNAVAILABLE})
    names = [*runners, *(["random"] if "random" in planners else [])]
    results: dict[str, list[EpisodeResult]] = {name: [] for name in names}
    episodes_run = 0
    for set_name, steps in (("short", short_steps), ("long", long_steps)):
        tasks = goal_tasks(data_dir, split, episodes, tuple(steps), render, seed)
        per_set: dict[str, list[EpisodeResult]] = {name: [] for name in results}
        known_way: dict[str, list[float]] = {}
        for i, task in enumerate(tasks):
            for space, value in cost_progress(task, worlds).items():
                known_way.setdefault(space, []).append(value)
            limit = 2 * task.goal_steps + 10
            for name, (world, run_episode) in runners.items():
                res = run_episode(world, task, settings, limit, render, keep_frames=i < videos)
                per_set[name].append(res)
                if res.frames:
                    summary["videos"].append(str(_write_video(out / f"{name}_{set_name}_{i:02d}_{task.video_id}.mp4",
                                                              res, encode_video)))
            if "random" in per_set:  # its own draws per goal, in each set
                per_set["random"].append(run_random_episode(task, settings.actions, limit,
                                                            seed + i + (0 if set_name == "short" else 100_000)))
            log.info("%s goal %d/%d (%d steps away): %s", set_name, i + 1, len(tasks), task.goal_steps,
                     ", ".join(f"{n} {'reached' if r[-1].success else 'not reached'} ({r[-1].steps} steps)"
                               for n, r in per_set.items()))
        for name, res in per_set.items():
            summary[f"success_rate/{name}/{set_name}"] = mean(r.success for r in res)
            results[name] += res
        for space, values in known_way.items():
            summary[f"cost_progress/{space}/{set_name}"] = mean(values)
        summary[f"goal_steps_mean/{set_name}"] = mean(t.goal_steps for t in tasks)
        summary[f"episodes/{set_name}"] = len(tasks)
        episodes_run += len(tasks)
    summary["episodes"] = episodes_run
    for name, res in results.items():
        summary[f"success_rate/{name}"] = mean(r.success for r in res)
        if name != "random":
            summary[f"planning_s_per_step/{name}"] = mean(s for r in res for s in r.planning_s)
    summary["wall_time_s"] = time.perf_counter() - t_start
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("cost progress along the bot's path (1: falls at every step, 0: unrelated): " + ", ".join(
        f"{space} {summary[f'cost_progress/{space}/short']:.2f} / {summary[f'cost_progress/{space}/long']:.2f}"
        for space in ("pixels", "level1", "level2") if f"cost_progress/{space}/short" in summary) + " (short / long)")
    print("".join(f"{name}: success {summary[f'success_rate/{name}']:.2f} (short "
                  f"{summary[f'success_rate/{name}/short']:.2f}, long {summary[f'success_rate/{name}/long']:.2f}); "
                  for name in results) + str(out / "summary.json"))
    return summary


def check_request(episodes: int, short_steps, long_steps, settings: PlannerSettings, planners) -> None:
    """Refuse, before anything is loaded, what cannot run: one line naming the setting."""
    unknown = [name for name in planners if name not in PLANNERS]
    if unknown:
        raise UserError(f"planners {unknown}: choose from {list(PLANNERS)}")
    if episodes < 1:
        raise UserError(f"episodes {episodes}: need at least 1 goal per set")
    for name, steps in (("short_steps", short_steps), ("long_steps", long_steps)):
        if len(steps) != 2 or not 2 <= steps[0] <= steps[1]:
            raise UserError(f"{name} {list(steps)}: need [low, high] with 2 <= low <= high (bot steps to the goal)")
    if not settings.actions or any(not 0 <= a < NUM_ACTIONS for a in settings.actions) \
            or len(set(settings.actions)) != len(settings.actions):
        raise UserError(f"planner.actions {settings.actions}: distinct minigrid action ids in 0..{NUM_ACTIONS - 1}")


def check_model(model, ckpt: str, settings: PlannerSettings, render: Rendering, planners) -> None:
    """Refuse a checkpoint that cannot plan as asked: no actions, a context that does not fit its
    steps, frames of another size than it was trained on."""
    if model.levels[0].action_encoder is None:
        raise UserError(f"{ckpt}: level 1 takes no actions, so it cannot imagine a plan; pretrain with "
                        "configs/pretrain/babyai_actions.yaml (levels[0].actions)")
    window = model.config.frames_per_window
    if settings.context_frames % window:
        raise UserError(f"planner.context_frames {settings.context_frames}: need a multiple of {window} "
                        "(the model's window)")
    hierarchical = "hierarchical" in planners and model.num_levels >= 2 and model.levels[1].action_encoder is not None
    if hierarchical and settings.context_frames % model.step_frames(1):
        raise UserError(f"planner.context_frames {settings.context_frames}: the hierarchical planner needs a "
                        f"multiple of {model.step_frames(1)} (level 2's step)")
    trained = getattr(getattr(model, "input_settings", None), "resolution", None)
    if trained is not None and trained != render.size:
        raise UserError(f"size {render.size}: {ckpt} was trained on {trained}-pixel frames; plan with --size {trained}")


def cost_progress(task: GoalTask, worlds: dict) -> dict[str, float]:
    """Does a cost know the way to ``task``'s goal? :func:`progress` of the distance to the goal
    along the bot's recorded path, in pixels (mean absolute difference, the reference a learnt
    cost should beat) and in each planning level's representation: the space the planners' costs
    are measured in, here between real states (still images, as the goal is), not predictions."""
    frames = torch.from_numpy(task.path_frames)  # [P, H, W, 3], the last the goal
    out = {"pixels": progress((frames[:-1].float() - frames[-1].float()).abs().mean(dim=(1, 2, 3)))}
    images = to_model_input(frames[:, None])[:, :, 0]  # [P, C, H, W]
    levels = [("level1", worlds["flat"])]
    if "hierarchical" in worlds:
        levels.append(("level2", worlds["hierarchical"]))
    for space, world in levels:
        states = world.encode_states(images)  # [P, Q, D]
        out[space] = progress(representation_cost(states[:-1, None], states[-1]))
    return out


def _write_video(path: Path, res: EpisodeResult, encode_video) -> Path:
    """What the agent saw, step by step, beside the goal: uint8 [T, H, 2W, 3] at 4 fps.

    A hierarchical episode has a third panel between the two, [T, H, 3W, 3]: the subgoal level 2
    chose at each step, drawn as its nearest recorded state on the way to the goal (the last
    frame, after the last plan, repeats the last subgoal).
    """
    goal = np.broadcast_to(res.task.goal_frame, (len(res.frames), *res.task.goal_frame.shape))
    panels = [np.stack(res.frames)]
    if res.subgoal_frames:
        panels.append(np.stack(res.subgoal_frames + res.subgoal_frames[-1:]))
    encode_video(path, np.concatenate([*panels, goal], axis=2), fps=4)
    return path
