"""datasets/babyai/make_dataset.py: real BabyAI episodes played by minigrid's bot, read back by hjepa."""

from __future__ import annotations

import copy
import csv
import importlib.util
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import pytest
import torch

pytest.importorskip("minigrid")

from hjepa.anticipation.annotations import (  # noqa: E402
    build_vocab,
    keep_known,
    read_annotations,
    read_class_names,
    read_video_info,
)
from hjepa.data.manifests import read_manifest  # noqa: E402
from hjepa.data.readers import open_video, video_info  # noqa: E402

ROOT = Path(__file__).parents[1]
SPLITS = ("train", "val", "test")
EPISODES = ["--episodes", "6", "--size", "64", "--fps", "8"]  # 4 train, 1 val, 1 test


def _script() -> ModuleType:
    path = ROOT / "datasets" / "babyai" / "make_dataset.py"
    spec = importlib.util.spec_from_file_location("make_dataset_babyai", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def make() -> ModuleType:
    return _script()


@pytest.fixture(scope="module")
def data(make: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("babyai") / "seed0"
    assert make.main(["--out", str(out), *EPISODES]) == 0
    return out


@pytest.fixture(scope="module")
def episodes(data: Path) -> dict[str, dict[str, str]]:
    return {r["video_id"]: r for r in _rows(data / "episodes.csv")}


def test_videos_decode_to_their_stated_frames_and_size(data: Path, episodes: dict) -> None:
    info = read_video_info(data / "video_info.csv")
    assert set(info) == set(episodes) and len(episodes) == 6
    for vid, ep in episodes.items():
        frames = int(ep["frames"])
        assert frames >= 2 and info[vid].num_frames == frames and info[vid].fps == 8.0
        for reader in ("pyav", "decord"):
            meta = video_info(data / "videos" / f"{vid}.mp4", reader)
            assert (meta.num_frames, meta.fps, meta.height, meta.width) == (frames, 8.0, 64, 64), reader
    with open_video(data / "videos" / f"{next(iter(episodes))}.mp4", "pyav") as r:
        clip = r.get_batch([0, r.num_frames - 1])
    assert tuple(clip.shape) == (2, 64, 64, 3) and clip.float().std() > 10  # a rendered grid, not a blank


def test_same_seed_same_csv_bytes_other_seed_differs(make: ModuleType, data: Path, tmp_path: Path) -> None:
    assert make.main(["--out", str(tmp_path / "again"), *EPISODES]) == 0
    assert make.main(["--out", str(tmp_path / "seed1"), *EPISODES, "--seed", "1"]) == 0
    names = sorted(p.name for p in data.glob("*.csv"))
    assert len(names) == 18
    for name in names:
        assert (tmp_path / "again" / name).read_bytes() == (data / name).read_bytes(), name
    for name in ("episodes.csv", "subgoals_train.csv", "actions_train.csv", "frame_actions_train.csv"):
        assert (tmp_path / "seed1" / name).read_bytes() != (data / name).read_bytes(), name
    for name in ("subgoal_verb_classes.csv", "subgoal_noun_classes.csv", "action_verb_classes.csv"):
        assert (tmp_path / "seed1" / name).read_bytes() == (data / name).read_bytes(), name  # fixed vocabularies


def test_splits_are_disjoint_episodes(data: Path, episodes: dict) -> None:
    seeds = defaultdict(set)
    for ep in episodes.values():
        seeds[ep["split"]].add(int(ep["env_seed"]))
    assert [len(seeds[s]) for s in SPLITS] == [4, 1, 1]
    assert not (seeds["train"] & seeds["val"] or seeds["train"] & seeds["test"] or seeds["val"] & seeds["test"])
    for split in SPLITS:
        in_manifest = {Path(r.path).stem for r in read_manifest(data / f"manifest_{split}.csv")}
        assert all(Path(r.path).is_file() for r in read_manifest(data / f"manifest_{split}.csv"))
        assert in_manifest == {v for v, ep in episodes.items() if ep["split"] == split}
        for kind in ("subgoals", "actions", "frame_actions"):
            assert {r["video_id"] for r in _rows(data / f"{kind}_{split}.csv")} == in_manifest, (kind, split)


@pytest.mark.parametrize("kind", ["subgoals", "actions"])
def test_segments_tile_their_video_without_overlap(data: Path, episodes: dict, kind: str) -> None:
    for split in SPLITS:
        by_video = defaultdict(list)
        for r in _rows(data / f"{kind}_{split}.csv"):
            start, stop = int(r["start_frame"]), int(r["stop_frame"])
            assert r["start_timestamp"] == _clock(start / 8) and r["stop_timestamp"] == _clock(stop / 8)
            by_video[r["video_id"]].append((start, stop, r["verb"], r["noun"]))
        for vid, segs in by_video.items():
            frames = int(episodes[vid]["frames"])
            assert all(0 <= a < b <= frames for a, b, _, _ in segs)
            assert all(s[1] <= t[0] for s, t in zip(segs, segs[1:])), "segments overlap or are out of order"
            assert all(s[1] == t[0] for s, t in zip(segs, segs[1:])), "a gap between segments"
            assert segs[0][0] == 0
            # Subgoals cover the frames where the bot acted; the solved last frame gets only `done`.
            assert segs[-1][1] == (frames - 1 if kind == "subgoals" else frames)
            if kind == "subgoals":  # maximal runs: neighbours differ in (verb, noun)
                assert all(s[2:] != t[2:] for s, t in zip(segs, segs[1:]))


def _clock(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def test_frame_actions_agree_with_the_action_runs(data: Path, episodes: dict) -> None:
    actions = read_class_names(data / "action_verb_classes.csv")
    assert actions == ["left", "right", "forward", "pickup", "drop", "toggle", "done"]  # minigrid's ids
    for split in SPLITS:
        per_frame = defaultdict(list)
        for r in _rows(data / f"frame_actions_{split}.csv"):
            assert int(r["frame"]) == len(per_frame[r["video_id"]])
            per_frame[r["video_id"]].append(int(r["action"]))
        from_runs = defaultdict(list)
        last = {}
        for r in _rows(data / f"actions_{split}.csv"):
            verb = int(r["verb_class"])
            assert actions[verb] == r["verb"]
            assert last.get(r["video_id"]) != verb, "two runs of one action in a row: not maximal"
            last[r["video_id"]] = verb
            from_runs[r["video_id"]] += [verb] * (int(r["stop_frame"]) - int(r["start_frame"]))
        assert dict(per_frame) == dict(from_runs)
        for vid, acts in per_frame.items():
            assert len(acts) == int(episodes[vid]["frames"]) and acts[-1] == actions.index("done")


def test_exploration_mixes_random_runs_into_solved_episodes(make: ModuleType, data: Path, tmp_path: Path) -> None:
    """--explore: random runs, labelled ``random``, inside episodes the bot still solves; a replay of
    the recorded actions reaches the recorded end; the bot alone (the default) has none."""
    import gymnasium as gym

    p, run = 0.1, 8
    out = tmp_path / "explore"
    assert make.main(["--out", str(out), *EPISODES, "--explore", str(p), "--explore-run", str(run)]) == 0
    assert all(r["verb"] != "random" for split in SPLITS for r in _rows(data / f"subgoals_{split}.csv"))
    frames = random_frames = 0
    for r in _rows(out / "subgoals_train.csv"):
        n = int(r["stop_frame"]) - int(r["start_frame"])
        frames += n
        random_frames += n * (r["verb"] == "random")
        assert r["verb"] != "random" or r["noun"] == "none"
    # A run of mean length (run + 1) / 2 starts before a bot action with probability p.
    expected = p * (run + 1) / 2 / (1 + p * (run + 1) / 2)
    assert 0.5 * expected < random_frames / frames < 1.5 * expected, (random_frames, frames)
    actions = defaultdict(list)
    for r in _rows(out / "frame_actions_train.csv"):
        actions[r["video_id"]].append(int(r["action"]))
    env = gym.make(make.DEFAULT_ENV)
    for ep in _rows(out / "episodes.csv"):
        if ep["split"] != "train":
            continue
        env.reset(seed=int(ep["env_seed"]))
        rewards = [env.step(a)[1] for a in actions[ep["video_id"]][:-1]]
        assert rewards[-1] > 0 and not any(rewards[:-1]), ep["video_id"]  # solved at the last action only
    env.close()


def test_interaction_subgoals_take_their_primitive_action(data: Path) -> None:
    """The bot's one-step subgoals act on the object in front: pick up -> pickup, open -> toggle."""
    expected = {"pick up": "pickup", "open": "toggle", "close": "toggle", "drop": "drop"}
    checked = 0
    for split in SPLITS:
        action_at = {}
        for r in _rows(data / f"actions_{split}.csv"):
            for t in range(int(r["start_frame"]), int(r["stop_frame"])):
                action_at[r["video_id"], t] = (r["verb"], r["noun"], t == int(r["start_frame"]))
        for r in _rows(data / f"subgoals_{split}.csv"):
            if r["verb"] in expected:
                verb, noun, run_start = action_at[r["video_id"], int(r["start_frame"])]
                assert verb == expected[r["verb"]], r
                if r["verb"] in ("pick up", "open") and run_start:
                    assert noun == r["noun"], r  # the object in front is the subgoal's object
                checked += 1
    assert checked > 0


def test_hjepa_reads_the_annotations_and_classes(data: Path) -> None:
    table = read_video_info(data / "video_info.csv")
    verbs = read_class_names(data / "subgoal_verb_classes.csv")
    nouns = read_class_names(data / "subgoal_noun_classes.csv")
    assert verbs == sorted(verbs) and nouns == sorted(nouns) and {"go to", "pick up", "open", "drop"} <= set(verbs)
    assert read_class_names(data / "action_noun_classes.csv") == nouns
    train = read_annotations(data / "subgoals_train.csv")
    val = read_annotations(data / "subgoals_val.csv")
    by_frame = read_annotations(data / "subgoals_train.csv", format="epic", time_source="frame", video_info=table)
    assert [(s.start_s, s.stop_s) for s in train] == [(s.start_s, s.stop_s) for s in by_frame]
    rows = _rows(data / "subgoals_train.csv")
    assert len(train) == len(rows) and all(s.has_verb_noun and s.participant_id == "bot" for s in train)
    for s, r in zip(train, rows):
        assert (verbs[s.verb], nouns[s.noun]) == (r["verb"], r["noun"])
        assert s.stop_s <= table[s.video_id].duration_s + 1e-9
    vocab = build_vocab(train, len(verbs), len(nouns))
    assert vocab.num_classes["verb"] == len(verbs) and len(vocab.actions) >= 3
    kept, _, _ = keep_known(val, vocab)
    assert kept, "no validation subgoal seen in training"
    assert read_annotations(data / "actions_val.csv")


def test_pretrain_and_anticipate_run_on_the_dataset(make: ModuleType, data: Path, tmp_path: Path) -> None:
    from hjepa.cli.main import main

    run = tmp_path / "pretrain"
    rc = main(["pretrain", "--config", str(ROOT / "configs/pretrain/babyai.yaml"), "--run_dir", str(run),
               "--logger.wandb=false", "--data.train_manifests", str(data / "manifest_train.csv"),
               "--data.val_manifests", str(data / "manifest_val.csv"), "--data.batch_size=2",
               "--trainer.max_steps=3", "--trainer.limit_val_batches=1"])
    assert rc in (0, None)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["skipped_videos"] == 0
    out = tmp_path / "anticipate"
    paths = {"train": "subgoals_train.csv", "val": "subgoals_val.csv", "video_info": "video_info.csv",
             "verb_classes": "subgoal_verb_classes.csv", "noun_classes": "subgoal_noun_classes.csv"}
    flags = [a for key, name in paths.items() for a in (f"--data.{key}", str(data / name))]
    rc = main(["anticipate", "--config", str(ROOT / "configs/anticipate/babyai.yaml"),
               "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--out_dir", str(out), *flags,
               "--data.video_dir", str(data), "--optim.epochs", "1", "--ablation", "false"])
    assert rc in (0, None)
    result = json.loads((out / "summary.json").read_text())
    assert result["skipped_videos"] == 0 and result["num_verbs"] == len(make.SUBGOAL_VERBS) == 7 and result["num_nouns"] == 26


@pytest.fixture(scope="module")
def action_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 steps of the action-conditioned recipe on the tiny recording, with validation."""
    from hjepa.cli.main import main

    run = tmp_path_factory.mktemp("babyai_actions") / "pretrain"
    rc = main(["pretrain", "--config", str(ROOT / "configs/pretrain/babyai_actions.yaml"), "--run_dir", str(run),
               "--logger.wandb=false", "--data.train_manifests", str(data / "manifest_train.csv"),
               "--data.val_manifests", str(data / "manifest_val.csv"),
               "--data.train_actions", str(data / "frame_actions_train.csv"),
               "--data.val_actions", str(data / "frame_actions_val.csv"), "--data.batch_size=2",
               "--trainer.max_steps=3", "--trainer.limit_val_batches=1"])
    assert rc in (0, None)
    return run


def test_pretrain_with_actions_reads_each_frames_action(data: Path, action_run: Path, tmp_path: Path) -> None:
    from hjepa.loading import load_pretrained
    from hjepa.train.datamodule import VideoDataModule

    per_frame = defaultdict(dict)
    for r in _rows(data / "frame_actions_train.csv"):
        per_frame[r["video_id"]][int(r["frame"])] = int(r["action"])
    dm = VideoDataModule(train_manifests=str(data / "manifest_train.csv"), target_fps=8.0, num_windows=2,
                         train_actions=str(data / "frame_actions_train.csv"), hflip=False, batch_size=2)
    dm.setup()
    for i in range(len(dm.train_dataset)):
        sample = dm.train_dataset[(i, 7)]
        vid = Path(dm.train_dataset.rows[i].path).stem
        last = max(per_frame[vid])
        assert sample["actions"].tolist() == [per_frame[vid][min(f, last)] for f in sample["frame_index"].tolist()]
    with pytest.raises(ValueError, match="hflip"):
        VideoDataModule(train_manifests=str(data / "manifest_train.csv"),
                        train_actions=str(data / "frame_actions_train.csv"))
    for fps in (4.0, 16.0, 12.0):  # frames skipped (an action lost) or repeated (one action, two frames)
        other = VideoDataModule(train_manifests=str(data / "manifest_train.csv"), target_fps=fps, num_windows=2,
                                train_actions=str(data / "frame_actions_train.csv"), hflip=False, batch_size=2)
        other.setup()
        with pytest.raises(ValueError, match="must take every frame"):
            other.train_dataset[(0, 7)]

    run = action_run
    assert json.loads((run / "summary.json").read_text())["steps"] == 3
    model = load_pretrained(run / "checkpoints" / "last.ckpt")
    assert model.levels[0].action_encoder is not None
    assert model.levels[0].predictor.action_proj.weight.abs().sum() > 0  # trained away from its zero start


def test_plan_runs_in_the_real_environment(data: Path, action_run: Path, tmp_path: Path) -> None:
    """On goals from the test episode; the numbers of so brief a training are not judged."""
    from hjepa.cli.main import main

    run = action_run
    out = tmp_path / "plan"
    rc = main(["plan", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--data_dir", str(data), "--out", str(out),
               "--episodes", "1", "--short_steps", "[2, 4]", "--long_steps", "[5, 8]", "--planner.samples", "8",
               "--planner.iterations", "1", "--planner.horizon_steps", "2", "--videos", "1",
               "--highlight", "true"])  # as the fixture recording was made
    assert rc in (0, None)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["imagined_plans_per_step"] == 8
    for name in ("flat", "hierarchical", "random"):
        for key in (f"success_rate/{name}", f"success_rate/{name}/short", f"success_rate/{name}/long"):
            assert 0.0 <= summary[key] <= 1.0, key
    assert summary["planning_s_per_step/flat"] > 0 and summary["planning_s_per_step/hierarchical"] > 0
    for space in ("pixels", "level1", "level2"):
        for goals in ("short", "long"):
            assert -1.0 <= summary[f"cost_progress/{space}/{goals}"] <= 1.0
    assert summary["rendering"] == {"view": "full", "size": 64, "highlight": True}
    # No planner: only the check of the cost, on the same goals
    rc = main(["plan", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--data_dir", str(data), "--out",
               str(tmp_path / "cost"), "--episodes", "1", "--short_steps", "[2, 4]", "--long_steps", "[5, 8]",
               "--planners", "[]", "--highlight", "true"])
    assert rc in (0, None)
    only = json.loads((tmp_path / "cost" / "summary.json").read_text())
    assert not any(k.startswith("success_rate/") for k in only) and only["videos"] == []
    assert {k: v for k, v in only.items() if k.startswith("cost_progress/")} == \
        {k: v for k, v in summary.items() if k.startswith("cost_progress/")}
    for bad in (["--planners", "[greedy]"], ["--episodes", "0"], ["--short_steps", "[1, 4]"],
                ["--planner.actions", "[2, 9]"], ["--planner.context_frames", "12"], ["--size", "96"]):
        try:  # user errors: one line, status 2, before any episode runs
            rc = main(["plan", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--data_dir", str(data),
                       "--out", str(tmp_path / "bad"), *bad])
        except SystemExit as exit_:
            rc = exit_.code
        assert rc == 2, bad
        assert not (tmp_path / "bad").exists(), bad
    assert len(summary["videos"]) == 4  # one per planner and goal set
    for path in summary["videos"]:
        meta = video_info(path, "pyav")
        panels = 3 if Path(path).name.startswith("hierarchical") else 2  # agent's view | (subgoal |) goal
        assert (meta.height, meta.width) == (64, 64 * panels) and meta.num_frames >= 2, path


def test_evaluate_scores_an_action_model_with_its_actions_and_an_action_control(data: Path, action_run: Path,
                                                                              tmp_path: Path) -> None:
    from hjepa.errors import UserError
    from hjepa.eval.evaluate import run_evaluate

    ckpt = str(action_run / "checkpoints" / "last.ckpt")
    # the training episodes: the controls need two clips in a batch, the one validation episode gives one
    summary = run_evaluate(ckpt, out_dir=str(tmp_path / "ev"), data=str(data / "manifest_train.csv"),
                           actions=str(data / "frame_actions_train.csv"), probes=False, controls=True, batch_size=2)
    assert "level1/h1/skill" in summary and "control_actions/level1/h1/skill" in summary
    # the control really predicts from other actions: the action weights moved off zero, so it differs
    assert summary["control_actions/level1/h1/skill"] != summary["level1/h1/skill"]
    assert summary["skipped_videos"] == 0
    with pytest.raises(UserError, match="give --actions"):
        run_evaluate(ckpt, out_dir=str(tmp_path / "ev2"), data=str(data / "manifest_val.csv"), probes=False)


class _Oracle:
    """A world model that imagines by simulating the real environment: each state is the
    agent's (x, y, cos, sin of its heading), ``[1, 4]``. It reads the live environment the
    episode created (``holder``), so the planners' own logic is all that is judged."""

    step_frames = 2

    def __init__(self, holder: dict, goal_pos: tuple[int, int, int]) -> None:
        self.holder, self.goal = holder, self.feature(goal_pos)

    @staticmethod
    def feature(state: tuple[int, int, int]) -> torch.Tensor:
        x, y, d = state
        return torch.tensor([[x, y, math.cos(d * math.pi / 2), math.sin(d * math.pi / 2)]])

    def observe(self, clip) -> None:
        pass

    def encode_goal(self, image):
        return self.goal

    def imagine(self, actions):
        from hjepa.planning.minigrid_env import agent_state

        out = []
        for seq in actions.tolist():
            env = copy.deepcopy(self.holder["env"])
            steps = []
            for i, a in enumerate(seq):
                env.step(a)
                if i % self.step_frames == self.step_frames - 1:
                    steps.append(self.feature(agent_state(env)))
            out.append(torch.stack(steps))
        return torch.stack(out)  # [N, L // 2, 1, 4]


class _HierarchicalOracle:
    """Level 2 of the oracle: a macro-action (dx, dy, heading) in [-1, 1]^3 moves the agent up to 3
    cells per level-2 step, walls ignored, and turns it to one of the 4 headings; level 2's state
    is the level-1 state that ends its step."""

    stride, macro_dim, step_frames = 4, 3, 8

    def __init__(self, holder: dict, goal_pos: tuple[int, int, int]) -> None:
        self.low = _Oracle(holder, goal_pos)

    def observe(self, clip) -> None:
        pass

    def encode_goal(self, image):
        return self.low.goal, self.low.goal

    def imagine_macro(self, macro):
        from hjepa.planning.minigrid_env import agent_state

        here = _Oracle.feature(agent_state(self.low.holder["env"]))[0]  # [4]
        moved = here[:2] + torch.cumsum(torch.round(3 * macro[..., :2]), dim=1)  # [N, H, 2]
        heading = torch.round(1.5 * (macro[..., 2] + 1)) * torch.pi / 2  # [N, H]: 0, 1, 2 or 3 quarter turns
        return torch.stack([moved[..., 0], moved[..., 1], heading.cos(), heading.sin()], dim=-1)[:, :, None]

    def level2_of(self, imagined):
        return imagined[:, -1]


def test_model_predictive_control_reaches_real_goals_with_a_world_model_that_knows(
        data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flat and hierarchical MPC in the real environment, each with an oracle world model (the
    environment itself): the goals 5-8 bot steps away must be reached. The oracle's level 2 does
    not know the walls, so its subgoals alone can lead into one (goal_weight 0 reached 3 of these
    4 goals when tried); the lower search keeps its level-1 goal term, as configured by default."""
    from hjepa.planning import mpc
    from hjepa.planning.minigrid_env import Rendering, goal_tasks, make_env

    holder: dict = {}

    def recording_make_env(env_id: str):
        holder["env"] = make_env(env_id)
        return holder["env"]

    monkeypatch.setattr(mpc, "make_env", recording_make_env)
    render = Rendering("full", 64, False)
    tasks = goal_tasks(data, "train", 4, (5, 8), render)
    flat_settings = mpc.PlannerSettings(samples=32, iterations=3, horizon_steps=4, actions=[0, 1, 2, 5])
    hier_settings = mpc.PlannerSettings(samples=64, iterations=3, actions=[0, 1, 2, 5], top_horizon_steps=2)
    flat = [mpc.run_flat_episode(_Oracle(holder, t.goal_pos), t, flat_settings, 2 * t.goal_steps + 10, render)
            for t in tasks]
    hier = [mpc.run_hierarchical_episode(_HierarchicalOracle(holder, t.goal_pos), t, hier_settings,
                                         2 * t.goal_steps + 10, render) for t in tasks]
    assert all(r.success for r in flat), [(r.task.goal_steps, r.steps) for r in flat]
    assert all(r.success for r in hier), [(r.task.goal_steps, r.steps) for r in hier]
