"""Every shipped evaluate / visualize config names only real, well-typed arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser

from hjepa.eval.evaluate import run_evaluate
from hjepa.viz.visualize import run_visualize

CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "evaluate").glob("*.yaml"))


def _parser(fn) -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False, allow_abbrev=False)
    parser.add_function_arguments(fn, as_group=False)
    return parser


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_parses_against_its_function(path):
    fn = run_visualize if path.stem.startswith("visualize") else run_evaluate
    required = ["--ckpt", "x.ckpt"] + (["--video", "v.mp4"] if fn is run_visualize else [])
    values = yaml.safe_load(path.read_text())
    cfg = _parser(fn).parse_args(required + [f"--{k}={v}" for k, v in values.items()])
    for key, value in values.items():
        assert cfg[key] == value, key


def test_unknown_keys_are_refused():
    with pytest.raises(Exception, match="max_clipz"):
        _parser(run_evaluate).parse_args(["--ckpt", "x", "--max_clipz", "3"])
    with pytest.raises(Exception, match="colums"):
        _parser(run_visualize).parse_args(["--ckpt", "x", "--video", "v", "--colums", "3"])


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"synthetic.yaml", "manifest_gpu.yaml", "visualize.yaml"}
