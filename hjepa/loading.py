"""Rebuild an ``HJEPA`` from a file alone, strictly.

``load_pretrained`` takes either a training checkpoint (``.ckpt`` written by
``hjepa pretrain``: weights + ``checkpoint["hjepa"]["model_config"]``) or a folder written by
``hjepa export`` (``model.safetensors`` + ``config.json``). Files are read with
``torch.load(weights_only=True)`` or safetensors, so loading never runs code from the file.
Every mismatch between file and model is named: missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hjepa.input_settings import RECORD_KEY, InputSettings
from hjepa.models.config import HJEPAConfig
from hjepa.models.hierarchy import HJEPA

_MODEL_PREFIX = "model."  # HJEPAModule keeps the HJEPA under ``self.model``


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with errors that say what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(
            f"cannot read checkpoint {path}: {err.__class__.__name__}: {str(err).splitlines()[0]} "
            "(hjepa only loads plain tensors and Python values; files that would run code on load are refused)"
        ) from err


def describe_config_difference(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> str:
    """Human-readable list of config keys whose values differ between two nested dicts."""
    diffs: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{key}.{k}" if key else k)
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{key}[{i}]")
        elif a != b:
            diffs.append(f"{key}: checkpoint {a!r} vs current {b!r}")

    walk(saved, current, prefix)
    return "; ".join(diffs) if diffs else "no difference"


def load_state_dict_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``load_state_dict(strict=True)`` with one error naming every missing, unexpected and mis-shaped key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: {source} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(own[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}{' …' if len(missing) > 20 else ''}")
        if unexpected:
            parts.append(
                f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}{' …' if len(unexpected) > 20 else ''}"
            )
        if shapes:
            parts.append(f"mis-shaped keys ({len(shapes)}): {'; '.join(shapes[:20])}")
        raise ValueError(f"{source} does not match the model: " + " | ".join(parts))
    model.load_state_dict(state, strict=True)


def build_model(config: HJEPAConfig) -> HJEPA:
    """A new ``HJEPA`` for training: random weights, and level 1 from ``config.encoder.pretrained``
    when it names a file (V-JEPA / V-JEPA 2 / transformers weights, read without running code;
    sizes come from the config and the strict load names any difference)."""
    model = HJEPA(config)
    enc = config.encoder
    if enc.pretrained:
        from hjepa.models.pretrained import encoder_state_dict, load_state_file

        state = encoder_state_dict(load_state_file(enc.pretrained), enc.pretrained_key, source=enc.pretrained)
        model.load_level1_encoder(state, source=enc.pretrained)
    return model


def input_settings_of(record: dict[str, Any], legacy: Any, frames_per_window: int,
                      source: str) -> InputSettings | None:
    """The input record of a file: ``record`` (written since the record exists) or, for an older
    file, what its data-module arguments ``legacy`` say; None when it holds neither."""
    if record is not None:
        return InputSettings.from_dict(record, f"{source}: {RECORD_KEY}")
    if isinstance(legacy, dict):
        return InputSettings.from_legacy(legacy, frames_per_window)
    return None


def model_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> HJEPA:
    """Build the HJEPA a Lightning checkpoint dict describes and load its weights."""
    meta = ckpt.get("hjepa")
    if not isinstance(meta, dict) or "model_config" not in meta:
        raise ValueError(f"{source} has no 'hjepa' entry with a model_config: it was not written by hjepa pretrain")
    config = HJEPAConfig.from_dict(meta["model_config"])
    model = HJEPA(config)  # the checkpoint holds every weight: encoder.pretrained is not read again
    state = {k[len(_MODEL_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(_MODEL_PREFIX)}
    load_state_dict_strict(model, state, source)
    legacy = meta.get("data_config") or ckpt.get("datamodule_hyper_parameters")
    model.input_settings = input_settings_of(meta.get(RECORD_KEY), legacy, config.frames_per_window, source)
    return model


def load_pretrained(path: str | Path, map_location: str | torch.device = "cpu") -> HJEPA:
    """An ``HJEPA`` in eval mode from a ``.ckpt`` file or an ``hjepa export`` folder.

    ``model.input_settings`` is the file's record of the clips the model was trained on
    (:class:`hjepa.input_settings.InputSettings`; None for a file that records nothing).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: the file is not an hjepa checkpoint, would run code on load, or its
            weights do not match its config (the message names the keys).
    """
    path = Path(path)
    if path.is_dir():
        from hjepa.export import load_export

        state, config_dict = load_export(path)
        cfg = config_dict.get("model_config", config_dict)
        config = HJEPAConfig.from_dict(cfg)
        model = HJEPA(config)
        load_state_dict_strict(model, state, f"export {path}")
        model.input_settings = input_settings_of(config_dict.get(RECORD_KEY), config_dict.get("data_config"),
                                                 config.frames_per_window, f"export {path}")
    else:
        model = model_from_checkpoint(read_checkpoint(path), f"checkpoint {path}")
    return model.to(map_location).eval()


# What decides what a model's weights compute; the rest of its config (loss weights, EMA, VICReg,
# dropout, context_keep, the action inputs) may change when it is fine-tuned.
_ENCODER_ARCH = ("name", "patch_size", "tubelet_size", "pos_embed", "temporal_attention", "embed_dim", "depth",
                 "num_heads")
_LEVEL_ARCH = ("embed_dim", "depth", "num_heads", "stride", "num_queries", "pooling", "horizon", "target_input",
               "time_encoding", "context_window")
_PREDICTOR_ARCH = ("embed_dim", "depth", "num_heads", "anchor_queries")


def _architecture(cfg: dict[str, Any]) -> dict[str, Any]:
    return {
        "frames_per_window": cfg["frames_per_window"], "level_input": cfg["level_input"],
        "encoder": {k: cfg["encoder"][k] for k in _ENCODER_ARCH},
        "levels": [{**{k: lv[k] for k in _LEVEL_ARCH}, "latent_dim": lv["latent"]["dim"],
                    "predictor": {k: lv["predictor"][k] for k in _PREDICTOR_ARCH}} for lv in cfg["levels"]],
    }


# The weights an action-conditioned model has and the same model without actions lacks.
ACTION_WEIGHTS = (".action_encoder.", ".predictor.action_proj.")


def init_adding_actions(model: HJEPA, path: str | Path) -> None:
    """Start ``model`` from an hjepa checkpoint or export of the same architecture that may take
    no actions (a video-pretrained model, to fine-tune with actions).

    Every weight of the file is copied, strictly (the same names and shapes, each difference
    named); the action weights the file lacks (``ACTION_WEIGHTS``) keep their fresh start, whose
    zero action projections make the first predictions exactly the file's action-free ones.
    """
    source = load_pretrained(path)
    mine, theirs = _architecture(model.config.to_dict()), _architecture(source.config.to_dict())
    if mine != theirs:  # weights of equal shapes can still compute something else (time encoding, window)
        raise ValueError(f"init_from {path}: another architecture: "
                         f"{describe_config_difference(theirs, mine).replace('checkpoint', 'file')}")
    state, own = source.state_dict(), model.state_dict()
    new = [k for k in own if k not in state]
    other = [k for k in new if not any(part in k for part in ACTION_WEIGHTS)]
    if other:
        raise ValueError(f"init_from {path}: the file lacks {len(other)} weights that are not action inputs "
                         f"({', '.join(other[:5])}{' …' if len(other) > 5 else ''}): give a file of the same "
                         "architecture")
    load_state_dict_strict(model, {**state, **{k: own[k] for k in new}}, f"init_from {path}")
