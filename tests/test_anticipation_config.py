"""The run's typed configuration: shipped configs parse, unknown keys and bad values are refused."""

from pathlib import Path

import pytest

from hjepa.anticipation.config import AnticipationConfig, DataConfig, WindowConfig, load_config
from hjepa.anticipation.run import run_anticipation

CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "anticipate").glob("*.yaml"))


def _parser():
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog="hjepa anticipate", exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(run_anticipation, as_group=False)
    return parser


def test_configs_exist():
    assert {p.name for p in CONFIGS} >= {"synthetic.yaml", "epic100.yaml", "epic100_finetune.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_parses_both_ways(path):
    cfg = load_config(str(path))
    assert isinstance(cfg, AnticipationConfig)
    parser = _parser()
    ns = parser.parse_args(["--config", str(path), "--ckpt", "model.ckpt"])
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    init = instantiate(ns).as_dict()
    init.pop("config", None)
    # The parsed keyword arguments build the same validated config as the YAML reader.
    built = AnticipationConfig(**init)
    assert built.ckpt == "model.ckpt"
    assert built.window == cfg.window and built.data == cfg.data and built.optim == cfg.optim


def test_cli_refuses_unknown_keys():
    parser = _parser()
    with pytest.raises(Exception, match="tau_b"):
        parser.parse_args(["--window.tau_b", "1.0"])


def test_from_dict_refuses_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown config key.*anticipate\.window.*tau_b"):
        AnticipationConfig.from_dict({"window": {"tau_b": 1.0}})
    with pytest.raises(ValueError, match="unknown config key.*epochz"):
        AnticipationConfig.from_dict({"optim": {"epochz": 3}})
    with pytest.raises(ValueError, match="unknown config key.*modee"):
        AnticipationConfig.from_dict({"modee": "probe"})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"window": {"tau_a": -1.0}}, "'window.tau_a' = -1.0"),
        ({"mode": "train"}, "'mode'"),
        ({"level_lrs": [1e-4]}, "only used with mode=finetune"),
        ({"sls_pt": 7}, "'sls_pt'"),
        ({"device": "tpu"}, "'device'"),
        ({"context_steps": 0}, "'context_steps' = 0"),
    ],
)
def test_bad_values_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AnticipationConfig.from_dict(kwargs)


def test_section_checks():
    with pytest.raises(ValueError, match="window.tau_o"):
        WindowConfig(tau_o=2.0, num_windows=2)
    with pytest.raises(ValueError, match="frame_step"):
        WindowConfig(frame_step=2, sample_fps=8.0)
    with pytest.raises(ValueError, match="tau_a_range"):
        WindowConfig(tau_a_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="data.train/data.val"):
        DataConfig(train="a.csv")
    with pytest.raises(ValueError, match="video_pattern"):
        DataConfig(video_pattern="videos/x.mp4")
    with pytest.raises(ValueError, match="optim.loss"):
        AnticipationConfig.from_dict({"optim": {"loss": "hinge"}})


def test_overrides_and_run_refuses_missing_checkpoint(tmp_path):
    cfg = load_config(str(CONFIGS[0]), {"window.tau_a": 0.5, "optim.epochs": 2})
    assert cfg.window.tau_a == 0.5 and cfg.optim.epochs == 2
    with pytest.raises(ValueError, match="'ckpt' is empty"):
        run_anticipation(out_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError):
        run_anticipation(ckpt=str(tmp_path / "missing.ckpt"), out_dir=str(tmp_path))


EPIC = Path(__file__).parents[1].parent / "shared" / "data" / "epic100"


@pytest.mark.skipif(not (EPIC / "EPIC_100_validation.csv").is_file(), reason=f"real EPIC-100 annotations not in {EPIC}")
def test_epic_config_reads_the_real_annotations(tmp_path, monkeypatch):
    from hjepa.anticipation.run import prepare_data

    monkeypatch.chdir(Path(__file__).parents[1])  # the config's paths are relative to the repository root
    videos = tmp_path / "EPIC-KITCHENS"
    for vid in ("P01_01", "P01_11"):  # one training video, one validation video; the rest are missing
        (videos / "P01" / "videos").mkdir(parents=True, exist_ok=True)
        (videos / "P01" / "videos" / f"{vid}.MP4").write_bytes(b"")
    cfg = load_config("configs/anticipate/epic100.yaml", {"data.video_dir": str(videos), "device": "cpu"})
    ds = prepare_data(cfg, tmp_path)
    c = ds.counts
    assert (c["num_verbs"], c["num_nouns"], c["num_actions"]) == (97, 300, 3568)
    assert (c["train_segments"], c["val_segments"]) == (67217, 9668)
    # unseen pairs are action misses, not dropped; the challenge's lists derived from the annotations
    assert (c["val_unseen_action_segments"], c["val_unseen_actions"]) == (372, 238)
    assert c["val_unseen_participants"] == ["P18", "P32"] and c["val_unseen_participant_segments"] == 1065
    assert (c["tail_verbs"], c["tail_nouns"]) == (86, 228) and set(c["protocol_lists"].values()) == {"derived"}
    assert len(ds.val_all) == 9668  # every validation segment is scored, also those without a video
    assert c["skipped_videos"] == 495 + 138 - 2
    assert {s.video_id for s in ds.train} == {"P01_01"} and {s.video_id for s in ds.val} == {"P01_11"}
    assert ds.video_info["P01_11"].fps == pytest.approx(59.94, abs=1e-3)
    assert ds.rate(ds.video_info["P01_11"]) == 8.0  # sample_fps from the config, whatever the video's fps
