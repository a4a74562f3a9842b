"""Write a video dataset of BabyAI episodes played by minigrid's BabyAI bot, with subgoal and action annotations.

    python datasets/babyai/make_dataset.py --out data/babyai [--episodes 1000] \
        [--env BabyAI-KeyCorridorS4R3-v0] [--size 64] [--fps 8] [--seed 0] [--view full|agent] \
        [--no-highlight] [--explore 0.0] [--explore-run 8]

Every episode is a BabyAI level reset with its own env seed and solved by
``minigrid.utils.baby_ai_bot.BabyAIBot``; each environment state is one video frame (frame t is
the state in which the bot chose action t, the last frame the solved state), rendered by the
environment's own renderer (the whole grid, or the agent's 7x7 view with ``--view agent``; the
cells the agent sees shaded, as minigrid draws them, unless ``--no-highlight``),
padded to a square with black, resized to ``--size`` pixels and written as H.264 (yuv420p) at
``--fps``. Episodes the bot does not solve (it raises, loops, or runs out of steps) are left
out and the next env seed is tried, so a split always has the asked number of episodes.

With ``--explore P`` the bot is mixed with random exploration, so that a world model learnt
from the recording also sees what actions the bot would not take do: before each action not
already in a random run, a run of uniformly random actions (``left`` .. ``toggle``; its length
uniform in 1 .. ``--explore-run``) starts with probability P. The bot is told the action taken
(its advising mode) and plans on from wherever the random run left the agent. Random actions
are labelled ``random none`` in the subgoal annotations. ``--explore 0`` (the default) is the
bot alone.

Splits are by episode: ``train``, ``val`` and ``test`` draw env seeds from disjoint ranges
(:func:`env_seed`), so no layout is in two splits, and the whole output is a function of the
arguments: re-running writes byte-identical CSVs. Written to ``--out``:

* ``videos/<split>_<nnnnn>.mp4``: one video per episode; its file stem is its ``video_id``.
* ``manifest_{train,val,test}.csv``: ``path,label`` (label -1, paths relative), for
  ``hjepa pretrain --data.train_manifests``.
* ``video_info.csv``: ``video_id,duration,fps,resolution``, the EPIC-KITCHENS-100 columns.
* ``subgoals_<split>.csv``: EPIC-KITCHENS-100 annotation columns, one row per maximal run of
  frames in which the bot pursued the same subgoal (the subgoal at the top of its stack when it
  chose the action), with verb = go to / explore / pick up / drop / open / close (and
  ``random`` for the random runs of ``--explore``) and noun = the object (``"red ball"``,
  ``"wall"``, ``"none"``).
* ``actions_<split>.csv``: the same columns, one row per maximal run of one primitive action
  (verb = left / right / forward / pickup / drop / toggle / done; noun = the object in front of
  the agent at the run's first frame, ``"none"`` for an empty cell).
* ``{subgoal,action}_{verb,noun}_classes.csv``: ``id,key,instances,category`` as EPIC's class
  files; fixed vocabularies (not the ones seen), so ids are the same for every split, seed and
  level. Action verb ids are minigrid's action ids; the other classes are sorted by name.
* ``frame_actions_<split>.csv``: ``video_id,frame,action``: the action taken in every frame
  (minigrid's ids; the last frame, the solved state, gets ``done``).
* ``episodes.csv``: ``video_id,split,env,env_seed,mission,frames``.

Times. Frame t covers ``[t / fps, (t + 1) / fps)``; a segment of frames ``start_frame`` ..
``stop_frame - 1`` has ``start_timestamp = start_frame / fps`` and ``stop_timestamp =
stop_frame / fps`` (``HH:MM:SS.fff``), so ``stop_frame`` is exclusive (EPIC's is the last
frame) and the segments of a video tile it without overlapping.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

try:
    import hjepa  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hjepa.data.manifests import VideoRow, write_csv_manifest
from hjepa.data.synthetic import EPIC_COLUMNS, encode_video, format_timestamp
from hjepa.planning.minigrid_env import Rendering  # the planner renders as the recording does

DEFAULT_ENV = "BabyAI-KeyCorridorS4R3-v0"
SPLITS = ("train", "val", "test")
SEED_STRIDE = 1_000_000  # env seeds per split and --seed: episode k of split s gets seed*3*STRIDE + s*STRIDE + k
PARTICIPANT = "bot"  # every episode is played by the same bot, so no participant is "unseen"
MAX_PLAN_CHANGES = 1000  # pushes + pops of the bot's stack while choosing one action: beyond, it is looping

# minigrid.core.actions.Actions, in id order (the ids written to frame_actions_*.csv).
ACTIONS = ("left", "right", "forward", "pickup", "drop", "toggle", "done")
SUBGOAL_VERBS = ("close", "drop", "explore", "go to", "open", "pick up", "random")
COLOURS = ("blue", "green", "grey", "purple", "red", "yellow")  # minigrid.core.constants.COLOR_NAMES
OBJECT_TYPES = ("ball", "box", "door", "key")
NOUNS = tuple(sorted(["none", "wall"] + [f"{c} {t}" for c in COLOURS for t in OBJECT_TYPES]))


class BotFailure(RuntimeError):
    """The bot could not solve an episode; the episode is left out and the next seed tried."""


@dataclass
class Episode:
    """One solved episode: frames [T + 1, H, W, 3] and, per step t < T, the bot's choices.

    ``subgoals[t]`` is the (verb, noun) of the subgoal that chose ``actions[t]``;
    ``fronts[t]`` names the object in front of the agent in frame t (T + 1 entries).
    """

    env_seed: int
    mission: str
    frames: np.ndarray
    actions: list[int] = field(default_factory=list)
    subgoals: list[tuple[str, str]] = field(default_factory=list)
    fronts: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return len(self.frames)


class CappedStack(list):
    """The bot's subgoal stack, raising :class:`BotFailure` when one plan change leads to another
    without end.

    Some levels (e.g. ``BabyAI-UnlockToUnlock-v0``) make the bot push subgoals forever inside
    one ``replan`` call; counting stack operations stops that deterministically, where a
    wall-clock limit would make the dataset depend on the machine's speed.
    """

    def __init__(self, items: Iterable[Any] = ()) -> None:
        super().__init__(items)
        self.changes = 0

    def _count(self) -> None:
        self.changes += 1
        if self.changes > MAX_PLAN_CHANGES:
            raise BotFailure(f"more than {MAX_PLAN_CHANGES} plan changes for one action")

    def append(self, item: Any) -> None:
        self._count()
        super().append(item)

    def pop(self, index: int = -1) -> Any:
        self._count()
        return super().pop(index)


# --- what the bot is doing --------------------------------------------------------------------


def object_name(obj: Any) -> str:
    """Noun of a grid cell's content: ``"red ball"``, ``"wall"``, or ``"none"`` for an empty cell."""
    if obj is None:
        return "none"
    name = "wall" if obj.type == "wall" else f"{obj.color} {obj.type}"
    if name not in NOUNS:
        raise ValueError(f"object {name!r} is not in the noun vocabulary {NOUNS}")
    return name


def goto_target(bot: Any, subgoal: Any) -> Any:
    """The object a GoNextToSubgoal heads for (None when its target is an empty cell)."""
    from minigrid.core.world_object import WorldObj
    from minigrid.envs.babyai.core.verifier import ObjDesc

    datum = subgoal.datum
    if isinstance(datum, ObjDesc):
        if len(datum.obj_set) == 1:
            return datum.obj_set[0]
        # Several objects match the description: the bot heads for the closest one it has seen.
        return bot._find_obj_pos(datum, subgoal.reason == "PutNext")[0]
    if isinstance(datum, WorldObj):
        return datum
    return bot.mission.unwrapped.grid.get(*datum)  # a position: whatever is there


def subgoal_label(bot: Any, subgoal: Any) -> tuple[str, str]:
    """(verb, noun) of the subgoal that chose the current action.

    Exploration (a GoNextTo towards unseen cells) is named ``explore none``: its target cell
    changes every step and is by definition not seen yet.
    """
    from minigrid.utils import baby_ai_bot as b

    env = bot.mission.unwrapped
    front = env.grid.get(*env.front_pos)
    if isinstance(subgoal, b.GoNextToSubgoal):
        if subgoal.reason == "Explore":
            return "explore", "none"
        return "go to", object_name(goto_target(bot, subgoal))
    if isinstance(subgoal, b.PickupSubgoal):
        return "pick up", object_name(front)
    if isinstance(subgoal, b.DropSubgoal):
        return "drop", object_name(env.carrying)
    if isinstance(subgoal, b.OpenSubgoal):
        return "open", object_name(front)
    if isinstance(subgoal, b.CloseSubgoal):
        return "close", object_name(front)
    raise BotFailure(f"an action chosen by an unexpected subgoal {subgoal!r}")


# --- playing and rendering --------------------------------------------------------------------


def front_name(env: Any) -> str:
    u = env.unwrapped
    return object_name(u.grid.get(*u.front_pos))


def bot_call(fn: Any, *args: Any) -> Any:
    """Call into the bot, turning its own failures (asserts, a box it opened) into :class:`BotFailure`."""
    from minigrid.utils.baby_ai_bot import DisappearedBoxError

    try:
        return fn(*args)
    except (DisappearedBoxError, AssertionError, IndexError) as err:
        raise BotFailure(f"the bot failed: {type(err).__name__}: {err}") from None


def play_episode(env: Any, seed: int, render: Rendering, explore: float = 0.0, explore_run: int = 8) -> Episode:
    """Reset ``env`` with ``seed`` and let the bot solve it; raises :class:`BotFailure` if it does not.

    ``explore``, ``explore_run``: the random runs mixed in (module docstring), drawn from a
    generator seeded by ``seed``, so an episode is a function of its arguments.
    """
    from minigrid.utils.baby_ai_bot import BabyAIBot

    with contextlib.redirect_stdout(io.StringIO()):  # BabyAI prints every rejected layout it samples
        env.reset(seed=seed)
    frames = [render.frame(env)]
    ep = Episode(seed, env.unwrapped.mission, np.empty(0), fronts=[front_name(env)])
    bot = bot_call(BabyAIBot, env)
    bot.stack = CappedStack(bot.stack)
    rng = np.random.default_rng(seed)
    random_left, taken = 0, None
    terminated = truncated = False
    while not (terminated or truncated):
        bot.stack.changes = 0
        action = int(bot_call(bot.replan, taken))  # taken: None when the bot's own action was
        if not bot.stack:
            raise BotFailure("the bot says done before the level is solved")
        if random_left == 0 and explore > 0 and rng.random() < explore:
            random_left = int(rng.integers(1, explore_run + 1))
        if random_left:
            random_left -= 1
            action = taken = int(rng.integers(0, ACTIONS.index("done")))
            ep.subgoals.append(("random", "none"))
        else:
            taken = None
            ep.subgoals.append(bot_call(subgoal_label, bot, bot.stack[-1]))
        ep.actions.append(action)
        _, reward, terminated, truncated, _ = env.step(action)
        frames.append(render.frame(env))
        ep.fronts.append(front_name(env))
    if not (terminated and reward > 0):
        raise BotFailure(f"not solved within {env.unwrapped.max_steps} steps")
    ep.actions.append(ACTIONS.index("done"))  # the solved state: nothing left to do
    ep.frames = np.stack(frames)
    return ep


def env_seed(seed: int, split: str, k: int) -> int:
    """Env seed of the k-th attempt of ``split``: disjoint ranges per split and per ``--seed``."""
    if not 0 <= k < SEED_STRIDE:
        raise ValueError(f"attempt {k} outside [0, {SEED_STRIDE})")
    return (seed * len(SPLITS) + SPLITS.index(split)) * SEED_STRIDE + k


def split_sizes(episodes: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """Episodes per split: val and test get their fraction (at least 1 when it is > 0), train the rest."""
    def part(fraction: float) -> int:
        return max(1, round(episodes * fraction)) if fraction > 0 else 0

    sizes = {"val": part(val_fraction), "test": part(test_fraction)}
    sizes["train"] = episodes - sizes["val"] - sizes["test"]
    if sizes["train"] < 1:
        raise SystemExit(f"--episodes {episodes} leaves no training episode after val/test {sizes}")
    return {s: sizes[s] for s in SPLITS}


# --- annotation rows --------------------------------------------------------------------------


def runs(labels: Sequence[Any]) -> list[tuple[int, int, Any]]:
    """Maximal runs of equal labels as ``(start, stop, label)``, ``stop`` exclusive."""
    out: list[tuple[int, int, Any]] = []
    for t, label in enumerate(labels):
        if out and out[-1][2] == label:
            out[-1] = (out[-1][0], t + 1, label)
        else:
            out.append((t, t + 1, label))
    return out


def epic_row(video_id: str, index: int, start: int, stop: int, verb: str, noun: str,
             verbs: Sequence[str], fps: float) -> dict[str, Any]:
    """One annotation row in the EPIC-KITCHENS-100 columns (frames -> times at ``fps``)."""
    t0, t1 = format_timestamp(start / fps), format_timestamp(stop / fps)
    n = NOUNS.index(noun)
    return {
        "narration_id": f"{video_id}_{index}", "participant_id": PARTICIPANT, "video_id": video_id,
        "narration_timestamp": t0, "start_timestamp": t0, "stop_timestamp": t1,
        "start_frame": start, "stop_frame": stop, "narration": f"{verb} {noun}",
        "verb": verb, "verb_class": verbs.index(verb), "noun": noun, "noun_class": n,
        "all_nouns": str([noun]), "all_noun_classes": str([n]),
    }


def subgoal_rows(video_id: str, ep: Episode, fps: float) -> list[dict[str, Any]]:
    """One row per maximal run of frames with the same subgoal (verb, noun)."""
    return [epic_row(video_id, i, s, e, verb, noun, SUBGOAL_VERBS, fps)
            for i, (s, e, (verb, noun)) in enumerate(runs(ep.subgoals))]


def action_rows(video_id: str, ep: Episode, fps: float) -> list[dict[str, Any]]:
    """One row per maximal run of one primitive action; noun: what is in front at its first frame."""
    return [epic_row(video_id, i, s, e, ACTIONS[a], ep.fronts[s], ACTIONS, fps)
            for i, (s, e, a) in enumerate(runs(ep.actions))]


def write_csv(path: Path, header: Sequence[str], rows: Iterable[dict[str, Any] | Sequence[Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in rows:
            w.writerow([row[h] for h in header] if isinstance(row, dict) else row)


def write_classes(out: Path) -> None:
    """The four class files, EPIC's ``id,key,instances,category`` columns."""
    header = ("id", "key", "instances", "category")
    nouns = [(i, n, str([n]), n.split()[-1] if n != "none" else "none") for i, n in enumerate(NOUNS)]
    write_csv(out / "subgoal_verb_classes.csv", header, [(i, v, str([v]), "subgoal") for i, v in enumerate(SUBGOAL_VERBS)])
    write_csv(out / "action_verb_classes.csv", header, [(i, a, str([a]), "action") for i, a in enumerate(ACTIONS)])
    write_csv(out / "subgoal_noun_classes.csv", header, nouns)
    write_csv(out / "action_noun_classes.csv", header, nouns)


# --- the dataset ------------------------------------------------------------------------------


@dataclass
class SplitFiles:
    """Rows of one split's CSVs, filled episode by episode."""

    manifest: list[VideoRow] = field(default_factory=list)
    subgoals: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    frame_actions: list[tuple[str, int, int]] = field(default_factory=list)
    frames: int = 0
    skipped: int = 0


def make_split(env: Any, split: str, count: int, args: argparse.Namespace, info: list, episodes: list) -> SplitFiles:
    """Play, render and encode ``count`` solved episodes of ``split``; return its CSV rows."""
    files = SplitFiles()
    k = 0
    while len(files.manifest) < count:
        seed = env_seed(args.seed, split, k)
        k += 1
        try:
            ep = play_episode(env, seed, Rendering(args.view, args.size, args.highlight), args.explore,
                              args.explore_run)
        except BotFailure as err:
            files.skipped += 1
            if files.skipped > max(100, 10 * count):
                raise SystemExit(f"{args.env}: the bot failed {files.skipped} seeds of {split} "
                                 f"(last: {err}); pick another level") from None
            continue
        video_id = f"{split}_{len(files.manifest):05d}"
        path = args.out / "videos" / f"{video_id}.mp4"
        encode_video(path, ep.frames, args.fps)
        files.manifest.append(VideoRow(str(path), -1))
        files.subgoals += subgoal_rows(video_id, ep, args.fps)
        files.actions += action_rows(video_id, ep, args.fps)
        files.frame_actions += [(video_id, t, a) for t, a in enumerate(ep.actions)]
        files.frames += ep.num_frames
        info.append((video_id, f"{ep.num_frames / args.fps:.6f}", f"{args.fps:g}", f"{args.size}x{args.size}"))
        episodes.append((video_id, split, args.env, seed, ep.mission, ep.num_frames))
    return files


def write_split(out: Path, split: str, files: SplitFiles) -> None:
    write_csv_manifest(out / f"manifest_{split}.csv", files.manifest)
    write_csv(out / f"subgoals_{split}.csv", EPIC_COLUMNS, files.subgoals)
    write_csv(out / f"actions_{split}.csv", EPIC_COLUMNS, files.actions)
    write_csv(out / f"frame_actions_{split}.csv", ("video_id", "frame", "action"), files.frame_actions)


def mean_seconds(rows: Sequence[dict[str, Any]], fps: float) -> float:
    return sum(r["stop_frame"] - r["start_frame"] for r in rows) / max(1, len(rows)) / fps


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--episodes", type=int, default=1000, help="episodes in all splits together")
    p.add_argument("--env", default=DEFAULT_ENV, help="a BabyAI level id (gymnasium)")
    p.add_argument("--size", type=int, default=64, help="side of the square frames, pixels (even)")
    p.add_argument("--fps", type=float, default=8.0, help="frames (= env steps) per second of video")
    p.add_argument("--seed", type=int, default=0, help="picks the env seeds of every split")
    p.add_argument("--view", choices=("full", "agent"), default="full", help="whole grid or the agent's view")
    p.add_argument("--no-highlight", dest="highlight", action="store_false",
                   help="do not shade the cells the agent sees (for goal reaching: see Rendering)")
    p.add_argument("--explore", type=float, default=0.0,
                   help="probability, before each bot action, of a run of random actions instead")
    p.add_argument("--explore-run", type=int, default=8, help="longest random run, actions")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of episodes in val")
    p.add_argument("--test-fraction", type=float, default=0.1, help="share of episodes in test")
    args = p.parse_args(argv)
    if args.size < 16 or args.size % 2:
        p.error(f"--size {args.size}: need an even number >= 16 (H.264 yuv420p)")
    if not args.fps > 0:
        p.error(f"--fps {args.fps}: must be > 0")
    if args.seed < 0 or args.episodes < 1:
        p.error("--seed must be >= 0 and --episodes >= 1")
    if not 0 <= args.explore < 1 or args.explore_run < 1:
        p.error(f"--explore {args.explore} / --explore-run {args.explore_run}: need 0 <= P < 1 and a run >= 1")
    if not (0 <= args.val_fraction < 1 and 0 <= args.test_fraction < 1):
        p.error("--val-fraction and --test-fraction must be in [0, 1)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import gymnasium as gym
        import minigrid  # noqa: F401  (registers the BabyAI levels)
    except ImportError:
        print("needs minigrid: pip install minigrid", file=sys.stderr)
        return 1
    sizes = split_sizes(args.episodes, args.val_fraction, args.test_fraction)
    out = args.out
    (out / "videos").mkdir(parents=True, exist_ok=True)
    env = gym.make(args.env, render_mode="rgb_array")
    info: list[tuple] = []
    episodes: list[tuple] = []
    t_start = time.perf_counter()
    for split in SPLITS:
        files = make_split(env, split, sizes[split], args, info, episodes)
        write_split(out, split, files)
        print(f"{split}: {len(files.manifest)} episodes ({files.skipped} seeds the bot failed left out), "
              f"{files.frames} frames, {len(files.subgoals)} subgoal segments "
              f"(mean {mean_seconds(files.subgoals, args.fps):.2f} s), {len(files.actions)} action runs "
              f"(mean {mean_seconds(files.actions, args.fps):.2f} s)")
    env.close()
    write_csv(out / "video_info.csv", ("video_id", "duration", "fps", "resolution"), info)
    write_csv(out / "episodes.csv", ("video_id", "split", "env", "env_seed", "mission", "frames"), episodes)
    write_classes(out)
    print(f"{out}: {len(episodes)} episodes of {args.env} in {time.perf_counter() - t_start:.1f} s; "
          f"{len(SUBGOAL_VERBS)} subgoal verbs, {len(ACTIONS)} action verbs, {len(NOUNS)} nouns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
