"""safetensors + JSON export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hjepa.export import CONFIG_FILE, EXPORT_FORMAT, WEIGHTS_FILE, export_model, load_export
from hjepa.models.pretrained import UnsafeCheckpointError, load_state_file
from hjepa.models.vit import build_encoder

REPO = Path(__file__).resolve().parents[1]


def test_export_roundtrip_is_bitwise_equal(tmp_path) -> None:
    torch.manual_seed(0)
    config = {"encoder": "micro", "overrides": {"pos_embed": "rope", "temporal_attention": "causal"}, "note": [1, 2.5]}
    model = build_encoder(config["encoder"], **config["overrides"]).eval()
    export_model(model, config, tmp_path / "export")
    assert (tmp_path / "export" / WEIGHTS_FILE).is_file()

    state_dict, loaded_config = load_export(tmp_path / "export")
    assert loaded_config == config
    rebuilt = build_encoder(loaded_config["encoder"], **loaded_config["overrides"]).eval()
    rebuilt.load_state_dict(state_dict, strict=True)
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))

    meta = json.loads((tmp_path / "export" / CONFIG_FILE).read_text())
    assert meta["format"] == EXPORT_FORMAT and meta["format_version"] == 1
    assert "safetensors" in meta["readme"] and meta["num_tensors"] == len(state_dict)


def test_config_that_json_cannot_hold_is_refused(tmp_path) -> None:
    model = build_encoder("micro")
    with pytest.raises(TypeError, match=r"config\.optim\.betas"):
        export_model(model, {"optim": {"betas": {0.9, 0.99}}}, tmp_path)
    with pytest.raises(TypeError, match="not finite"):
        export_model(model, {"lr": float("nan")}, tmp_path)


def test_tied_weights_are_exported(tmp_path) -> None:
    lin = torch.nn.Linear(4, 4)
    model = torch.nn.ModuleDict({"a": lin, "b": torch.nn.Linear(4, 4)})
    model["b"].weight = lin.weight  # shared storage
    export_model(model, {}, tmp_path)
    sd, _ = load_export(tmp_path)
    assert torch.equal(sd["a.weight"], sd["b.weight"])


def test_missing_or_foreign_export_folder(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_export(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"format": "something-else", "config": {}}))
    with pytest.raises(ValueError, match="format"):
        load_export(tmp_path)


def test_import_does_not_pull_in_lightning() -> None:
    code = (
        "import sys, hjepa.export; "
        "bad = [m for m in ('lightning', 'pytorch_lightning') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


class _Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED_MARKER', 'w').write('x')",))


def test_malicious_pickle_checkpoint_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "callback": _Evil()}, path)
    with pytest.raises(UnsafeCheckpointError, match="model.ckpt"):
        load_state_file(path)
    assert not (tmp_path / "PWNED_MARKER").exists()
    # A plain tensor checkpoint still loads.
    torch.save({"state_dict": {"w": torch.ones(2)}}, path)
    assert torch.equal(load_state_file(path)["state_dict"]["w"], torch.ones(2))
