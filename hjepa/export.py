"""Framework-free model export: ``model.safetensors`` + ``config.json`` in one folder.

The folder is readable with nothing but ``safetensors`` and ``json``: no pickle (so loading
runs no code from the file) and no Lightning. ``config.json`` wraps the caller's config dict::

    {"format": "hjepa-export", "format_version": 1, "readme": "...",
     "weights": "model.safetensors", "num_tensors": ..., "num_parameters": ..., "config": {...}}

This module imports only torch, safetensors and the standard library, so serving code can read
an export without the training stack.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

EXPORT_FORMAT = "hjepa-export"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
README = (
    "hjepa model export. model.safetensors holds the model's state_dict (plain tensors, no pickle); "
    "'config' below holds the arguments that rebuild the model. Load with hjepa.export.load_export(folder) "
    "or hjepa.load_pretrained(folder)."
)


def _json_problem(obj: Any, path: str = "config") -> str | None:
    """Dotted path of the first value JSON cannot hold (None when all is fine)."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return None
    if isinstance(obj, float):
        return None if obj == obj and obj not in (float("inf"), float("-inf")) else f"{path} (= {obj}, not finite)"
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            bad = _json_problem(v, f"{path}[{i}]")
            if bad:
                return bad
        return None
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                return f"{path} (key {k!r} is not a string)"
            bad = _json_problem(v, f"{path}.{k}")
            if bad:
                return bad
        return None
    return f"{path} (a {type(obj).__name__})"


def export_model(model: nn.Module, config: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``model``'s weights and ``config`` to ``out_dir``.

    Args:
        model: any module; its full ``state_dict()`` is saved (tensors moved to CPU).
        config: JSON-serialisable dict that rebuilds the model (only str keys, numbers, strings,
            bools, None, lists and dicts).
        out_dir: folder, created if needed; existing export files in it are replaced.

    Returns:
        The folder path.
    """
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    bad = _json_problem(config)
    if bad:
        raise TypeError(f"config is not JSON-serialisable at {bad}")
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, value in model.state_dict().items():
        t = value.detach().to("cpu").contiguous()
        # safetensors refuses tensors that share memory (tied weights): store a copy of repeats.
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key in seen and t.numel():
            t = t.clone()
        seen.add(key)
        tensors[name] = t
    meta = {
        "format": EXPORT_FORMAT,
        "format_version": FORMAT_VERSION,
        "readme": README,
        "weights": WEIGHTS_FILE,
        "num_tensors": len(tensors),
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "torch_version": torch.__version__,
        "config": config,
    }
    # Write under temporary names, then rename, so a crash never leaves a half-written export.
    tmp_w, tmp_c = out_dir / (WEIGHTS_FILE + ".tmp"), out_dir / (CONFIG_FILE + ".tmp")
    save_file(tensors, str(tmp_w), metadata={"format": EXPORT_FORMAT, "format_version": str(FORMAT_VERSION)})
    tmp_c.write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
    os.replace(tmp_w, out_dir / WEIGHTS_FILE)
    os.replace(tmp_c, out_dir / CONFIG_FILE)
    return out_dir


def read_export_config(out_dir: str | Path) -> dict[str, Any]:
    """The full ``config.json`` of an export (format fields + ``config``), validated."""
    out_dir = Path(out_dir)
    cfg_path = out_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{out_dir}: not an hjepa export (no {CONFIG_FILE})")
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{cfg_path}: invalid JSON ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{cfg_path}: 'format' is {found!r}, expected {EXPORT_FORMAT!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{cfg_path}: format_version {version!r} is not supported (this code reads <= {FORMAT_VERSION})"
        )
    if not isinstance(meta.get("config"), dict):
        raise ValueError(f"{cfg_path}: missing the 'config' dict")
    return meta


def load_export(out_dir: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read an export folder.

    Returns:
        (state_dict, config): the tensors of ``model.safetensors`` on ``device`` and the
        ``config`` dict that was passed to :func:`export_model`.
    """
    from safetensors.torch import load_file

    out_dir = Path(out_dir)
    meta = read_export_config(out_dir)
    weights = out_dir / meta.get("weights", WEIGHTS_FILE)
    if not weights.is_file():
        raise FileNotFoundError(f"{out_dir}: {weights.name} is missing")
    state_dict = load_file(str(weights), device=str(device))
    expected = meta.get("num_tensors")
    if isinstance(expected, int) and expected != len(state_dict):
        raise ValueError(f"{weights}: holds {len(state_dict)} tensors, {CONFIG_FILE} says {expected}")
    return state_dict, meta["config"]
