"""Load V-JEPA, V-JEPA 2 and transformers ``VJEPA2Model`` weights into :class:`VideoViT`.

Supported sources (a file, or for transformers a folder holding ``model.safetensors`` and
``config.json``):

* **V-JEPA** (facebookresearch/jepa) and **V-JEPA 2** (facebookresearch/vjepa2) training
  checkpoints: a dict with ``encoder``, ``target_encoder``, ``predictor``, ``epoch``, ... whose
  state dicts carry ``module.backbone.`` prefixes (DDP + multi-mask wrapper). Parameter names
  below the prefix are ours already (``patch_embed.proj``, ``blocks.{i}.attn.qkv``, ``norm``...).
  V-JEPA stores a fixed sin-cos ``pos_embed`` table; we compute that table per grid, so the
  stored one is checked against ours and dropped (an error if it differs). V-JEPA 2 uses RoPE
  and stores no table.
* **transformers** ``VJEPA2Model`` state dicts (``encoder.embeddings.patch_embeddings.proj``,
  ``encoder.layer.{i}.attention.query/key/value/proj``, ``norm1``, ``norm2``, ``mlp.fc1/fc2``,
  ``encoder.layernorm``; ``vjepa2.`` in front for the classification model): separate q/k/v
  projections are concatenated into our fused ``qkv``.

Everything is loaded with ``torch.load(..., weights_only=True)`` or safetensors: a pickle that
needs any code beyond tensors and plain containers (custom classes, ``__reduce__`` tricks) is
refused with :class:`UnsafeCheckpointError`. Loading is strict: every missing, unexpected or
mis-shaped key is named in one :class:`CheckpointLoadError`.
"""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from hjepa.models.pos_embed import sincos_3d
from hjepa.models.vit import VideoViT

log = logging.getLogger(__name__)

# Heads cannot be read from weights (they do not change any shape). Widths of the released
# V-JEPA / V-JEPA 2 encoders map to these head counts; other widths assume 64-channel heads.
KNOWN_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 22}
WRAPPER_PREFIXES = ("module.", "backbone.", "_orig_mod.")
HF_MODEL_PREFIX = "vjepa2."


class CheckpointLoadError(ValueError):
    """A checkpoint does not fit the model (names every key at fault) or cannot be read."""


class UnsafeCheckpointError(CheckpointLoadError):
    """A pickle that would run code on load."""


# ---------------------------------------------------------------------- reading files
def load_state_file(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint without running code from it.

    Args:
        path: ``.safetensors`` file, any ``torch.save`` file (``.pt``, ``.pth``, ``.bin``,
            ``.ckpt``), or a folder with ``model.safetensors`` / ``pytorch_model.bin``.

    Returns:
        The stored object (a state dict or a dict of state dicts), tensors on CPU.

    Raises:
        FileNotFoundError: nothing at ``path``.
        UnsafeCheckpointError: the pickle references classes / callables outside the plain
            tensor-and-container allowlist of ``weights_only=True`` loading.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                return load_state_file(path / name)
        raise FileNotFoundError(f"{path}: folder holds neither model.safetensors nor pytorch_model.bin")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"{path}: refused to load: the pickle needs code beyond tensors and plain containers "
            "(a custom class or a __reduce__ callable), which would run on load. Re-save the weights as a "
            f"plain state dict or as safetensors. Detail: {str(err).splitlines()[0]}"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointLoadError(f"{path}: not a readable torch checkpoint ({err})") from err


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def strip_prefixes(sd: Mapping[str, Tensor], prefixes: tuple[str, ...] = WRAPPER_PREFIXES) -> dict[str, Tensor]:
    """Remove leading wrapper prefixes (``module.``, ``backbone.``, ``_orig_mod.``), repeatedly."""
    out = {}
    for key, value in sd.items():
        new = key
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if new.startswith(p):
                    new = new[len(p) :]
                    changed = True
        if new in out:
            raise CheckpointLoadError(f"two checkpoint keys become {new!r} after removing prefixes {prefixes}")
        out[new] = value
    return out


def select_entry(ckpt: Any, checkpoint_key: str | None, source: str = "checkpoint") -> dict[str, Tensor]:
    """Pick one state dict out of a training checkpoint.

    A flat state dict is returned as is; otherwise ``ckpt[checkpoint_key]`` (an error lists the
    entries there are). Lightning-style ``{"state_dict": ...}`` is unwrapped too.
    """
    if _is_state_dict(ckpt):
        return dict(ckpt)
    if not isinstance(ckpt, Mapping):
        raise CheckpointLoadError(f"{source}: expected a dict, got {type(ckpt).__name__}")
    if checkpoint_key is not None and checkpoint_key in ckpt and _is_state_dict(ckpt[checkpoint_key]):
        return dict(ckpt[checkpoint_key])
    if "state_dict" in ckpt and _is_state_dict(ckpt["state_dict"]) and checkpoint_key not in ckpt:
        return dict(ckpt["state_dict"])
    entries = sorted(k for k, v in ckpt.items() if _is_state_dict(v))
    raise CheckpointLoadError(
        f"{source}: no state dict under checkpoint_key={checkpoint_key!r}; entries holding state dicts: {entries}"
    )


def is_hf_format(sd: Mapping[str, Tensor]) -> bool:
    """True for a transformers VJEPA2Model / VJEPA2ForVideoClassification state dict."""
    return any(k.startswith(("encoder.embeddings.", HF_MODEL_PREFIX + "encoder.")) for k in sd)


# ---------------------------------------------------------------------- conversion
_HF_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
_SAME_IN_BLOCK = ("norm1.", "norm2.", "mlp.fc1.", "mlp.fc2.")


def _fuse_qkv(parts: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """{query.weight, key.weight, value.weight, (biases)} -> {qkv.weight, qkv.bias}."""
    out = {}
    for kind in ("weight", "bias"):
        got = [parts.get(f"{n}.{kind}") for n in ("query", "key", "value")]
        if all(g is None for g in got):
            continue
        if any(g is None for g in got):
            missing = [f"{where}.attention.{n}.{kind}" for n, g in zip(("query", "key", "value"), got) if g is None]
            raise CheckpointLoadError(f"incomplete q/k/v projection, missing: {', '.join(missing)}")
        out[f"qkv.{kind}"] = torch.cat(got, dim=0)
    return out


def _convert_hf_blocks(sd: Mapping[str, Tensor], pattern: re.Pattern, prefix: str, out_prefix: str) -> tuple[dict, set]:
    """Rename transformers VJEPA2Layer weights into our Block names; returns (converted, used keys)."""
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    qkv_parts: dict[int, dict[str, Tensor]] = {}
    for key, value in sd.items():
        m = pattern.match(key)
        if not m:
            continue
        i, rest = int(m.group(1)), m.group(2)
        if rest.startswith(("attention.query.", "attention.key.", "attention.value.")):
            qkv_parts.setdefault(i, {})[rest[len("attention.") :]] = value
        elif rest.startswith("attention.proj."):
            out[f"{out_prefix}{i}.attn.proj.{rest.split('.')[-1]}"] = value
        elif rest.startswith(_SAME_IN_BLOCK):
            out[f"{out_prefix}{i}.{rest}"] = value
        else:
            continue  # left for the caller to report as unexpected
        used.add(key)
    for i, parts in qkv_parts.items():
        for name, value in _fuse_qkv(parts, f"{prefix}{i}").items():
            out[f"{out_prefix}{i}.attn.{name}"] = value
    return out, used


def convert_hf_encoder(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """transformers VJEPA2Model state dict -> VideoViT state dict (encoder part only).

    ``predictor.*`` and the classification head (``pooler.*``, ``classifier.*``) are ignored as
    other parts of the model; any other key that is not understood raises, naming it.
    """
    sd = {k[len(HF_MODEL_PREFIX) :] if k.startswith(HF_MODEL_PREFIX) else k: v for k, v in sd.items()}
    out, used = _convert_hf_blocks(sd, _HF_LAYER, "encoder.layer.", "blocks.")
    simple = {
        "encoder.embeddings.patch_embeddings.proj.weight": "patch_embed.proj.weight",
        "encoder.embeddings.patch_embeddings.proj.bias": "patch_embed.proj.bias",
        "encoder.layernorm.weight": "norm.weight",
        "encoder.layernorm.bias": "norm.bias",
    }
    for src, dst in simple.items():
        if src in sd:
            out[dst] = sd[src]
            used.add(src)
    other_parts = ("predictor.", "pooler.", "classifier.")
    unknown = sorted(k for k in sd if k not in used and not k.startswith(other_parts))
    if unknown:
        raise CheckpointLoadError(f"transformers VJEPA2 state dict has keys this converter does not know: {unknown}")
    return out


def encoder_state_dict(
    ckpt: Any, checkpoint_key: str = "target_encoder", source: str = "checkpoint"
) -> dict[str, Tensor]:
    """Our-named encoder state dict out of any supported checkpoint object.

    Args:
        ckpt: what :func:`load_state_file` returned (or an in-memory state dict / checkpoint dict).
        checkpoint_key: for V-JEPA / V-JEPA 2 training checkpoints, ``"target_encoder"`` (the EMA
            encoder, what the V-JEPA evaluations use) or ``"encoder"``. Ignored for transformers
            state dicts, which hold one encoder.
    """
    if _is_state_dict(ckpt) and is_hf_format(ckpt):
        return convert_hf_encoder(ckpt)
    sd = strip_prefixes(select_entry(ckpt, checkpoint_key, source))
    if is_hf_format(sd):
        return convert_hf_encoder(sd)
    return sd


# ---------------------------------------------------------------------- config inference
def _mlp_ratio(hidden: int, dim: int) -> float:
    ratio = hidden / dim
    if int(dim * ratio) != hidden:  # float rounding, e.g. 48/11: make int(dim * ratio) land on hidden
        ratio = (hidden + 0.5) / dim
    return ratio


def infer_encoder_config(sd: Mapping[str, Tensor], num_heads: int | None = None) -> dict[str, Any]:
    """VideoViT keywords for an our-named encoder state dict (see :func:`encoder_state_dict`).

    :func:`load_encoder_state_dict` uses them to tell a user whose config does not fit the weights
    which ``encoder.*`` values would.

    Read from the weights: width, depth, patch and tubelet size, input channels, MLP ratio, qkv
    bias. ``pos_embed`` is ``"sincos"`` when the state dict carries V-JEPA's ``pos_embed``
    table (its channel split is detected too) and ``"rope"`` when it does not (V-JEPA 2).
    ``num_heads`` is not stored in any weight: given, or taken from the released widths
    (:data:`KNOWN_HEADS`), else width // 64.
    """
    if "patch_embed.proj.weight" not in sd:
        raise CheckpointLoadError(
            f"cannot infer the encoder config: no 'patch_embed.proj.weight' among keys {sorted(sd)[:8]}..."
        )
    w = sd["patch_embed.proj.weight"]
    if w.ndim != 5:
        raise CheckpointLoadError(
            f"patch_embed.proj.weight has shape {tuple(w.shape)}: a 2-D (image) patch embed, VideoViT needs a Conv3d"
        )
    dim, in_chans, tubelet, patch, patch_w = (int(s) for s in w.shape)
    if patch != patch_w:
        raise CheckpointLoadError(f"non-square patches {patch}x{patch_w} are not supported")
    depth = len({int(k.split(".")[1]) for k in sd if k.startswith("blocks.")})
    if num_heads is None:
        num_heads = KNOWN_HEADS.get(dim, dim // 64 if dim % 64 == 0 else None)
        if num_heads is None:
            raise CheckpointLoadError(f"cannot infer num_heads for width {dim}; pass num_heads=")
    cfg: dict[str, Any] = {
        "embed_dim": dim,
        "depth": depth,
        "num_heads": num_heads,
        "patch_size": patch,
        "tubelet_size": tubelet,
        "in_chans": in_chans,
        "mlp_ratio": _mlp_ratio(int(sd["blocks.0.mlp.fc1.weight"].shape[0]), dim) if depth else 4.0,
        "qkv_bias": "blocks.0.attn.qkv.bias" in sd,
        "pos_embed": "sincos" if "pos_embed" in sd else "rope",
    }
    if "pos_embed" in sd:
        match = match_sincos_table(sd["pos_embed"])
        if match is not None:
            cfg["sincos_uniform_power"] = match[1]
    return cfg


def match_sincos_table(table: Tensor, atol: float = 1e-4) -> tuple[tuple[int, int, int], bool] | None:
    """Find the (grid, uniform_power) whose 3-D sin-cos table equals a stored ``pos_embed``.

    Args:
        table: [1, N, D] or [N, D] stored table (V-JEPA assumes a square spatial grid).

    Returns:
        ((Tg, Hg, Wg), uniform_power) or None when no sin-cos table of ours matches.
    """
    table = table.reshape(-1, table.shape[-1]).float()
    n, dim = table.shape
    for hg in range(1, int(n**0.5) + 1):
        if n % (hg * hg):
            continue
        grid = (n // (hg * hg), hg, hg)
        for uniform in (True, False):
            try:
                ours = sincos_3d(dim, grid, uniform)
            except ValueError:
                continue
            if torch.allclose(ours, table, atol=atol, rtol=0):
                return grid, uniform
    return None


# ---------------------------------------------------------------------- strict loading
def check_state_dict(model: nn.Module, sd: Mapping[str, Tensor], source: str = "checkpoint") -> None:
    """Raise one CheckpointLoadError naming every missing, unexpected and mis-shaped key."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{source} does not fit {type(model).__name__}:"]
    lines += [f"  missing in checkpoint: {k} (model shape {tuple(own[k].shape)})" for k in missing]
    lines += [f"  unexpected in checkpoint: {k} (checkpoint shape {tuple(sd[k].shape)})" for k in unexpected]
    lines += [
        f"  shape mismatch: {k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched
    ]
    raise CheckpointLoadError("\n".join(lines))


def load_encoder_state_dict(model: VideoViT, sd: Mapping[str, Tensor], source: str = "checkpoint") -> dict[str, str]:
    """Load an our-named encoder state dict into ``model`` strictly.

    A V-JEPA ``pos_embed`` table is verified to be the sin-cos table the model computes (same
    channel split, any grid) and then dropped; a table that differs raises.

    Returns:
        {dropped key: reason} for the keys deliberately not loaded.
    """
    given, sd = sd, dict(sd)
    dropped: dict[str, str] = {}
    if "pos_embed" in sd:
        table = sd.pop("pos_embed")
        if model.pos_embed != "sincos":
            raise CheckpointLoadError(
                f"{source}: has a sin-cos 'pos_embed' table {tuple(table.shape)} (a V-JEPA encoder) but the model "
                "uses pos_embed='rope'; build it with pos_embed='sincos'"
            )
        if table.shape[-1] != model.embed_dim:
            raise CheckpointLoadError(
                f"{source}: shape mismatch: pos_embed: checkpoint {tuple(table.shape)} vs model width {model.embed_dim}"
            )
        match = match_sincos_table(table)
        if match is None:
            raise CheckpointLoadError(
                f"{source}: 'pos_embed' {tuple(table.shape)} is not a 3-D sin-cos table this encoder can reproduce "
                "(learned or interpolated?); VideoViT computes its sin-cos positions per grid"
            )
        grid, uniform = match
        if uniform != model.sincos_uniform_power:
            raise CheckpointLoadError(
                f"{source}: 'pos_embed' is a sin-cos table with uniform_power={uniform} but the model has "
                f"sincos_uniform_power={model.sincos_uniform_power}; build it with sincos_uniform_power={uniform}"
            )
        dropped["pos_embed"] = (
            f"fixed sin-cos table for grid {grid} (uniform_power={uniform}), identical to the one the encoder "
            "computes per grid"
        )
        log.info("%s: dropping pos_embed: %s", source, dropped["pos_embed"])
    try:
        check_state_dict(model, sd, source)
    except CheckpointLoadError as err:
        raise CheckpointLoadError(str(err) + _config_hint(model, given)) from None
    model.load_state_dict(sd, strict=True)
    return dropped


def _config_hint(model: VideoViT, sd: Mapping[str, Tensor]) -> str:
    """The ``encoder.*`` config values the weights imply where the model differs ('' when none can be read)."""
    try:
        inferred = infer_encoder_config(sd, num_heads=model.num_heads)  # heads are not in the weights
    except CheckpointLoadError:
        return ""
    differ = [f"encoder.{k}={inferred[k]}" for k in ("embed_dim", "depth", "patch_size", "tubelet_size", "pos_embed")
              if getattr(model, k) != inferred[k]]
    return f"\n  the weights are an encoder with {', '.join(differ)}: set that in the config" if differ else ""
