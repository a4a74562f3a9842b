"""Loading V-JEPA / V-JEPA 2 / transformers VJEPA2Model weights into VideoViT."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from hjepa.models.layers import Block
from hjepa.models.pretrained import (
    CheckpointLoadError,
    UnsafeCheckpointError,
    encoder_state_dict,
    infer_encoder_config,
    load_encoder_state_dict,
    load_state_file,
)
from hjepa.models.vit import VideoViT

transformers = pytest.importorskip("transformers")
from transformers import VJEPA2Config, VJEPA2Model  # noqa: E402

TOL = 1e-4  # max abs difference allowed between the reference model's tokens and ours (float32)


def load_encoder(path, checkpoint_key: str = "target_encoder", num_heads: int | None = None) -> VideoViT:
    """A file read as ``hjepa.loading`` reads ``encoder.pretrained``, into a VideoViT sized from its weights."""
    sd = encoder_state_dict(load_state_file(path), checkpoint_key, source=str(path))
    model = VideoViT(**infer_encoder_config(sd, num_heads=num_heads))
    load_encoder_state_dict(model, sd, source=str(path))
    return model


def hf_model(hidden: int, heads: int, layers: int = 2, crop: int = 48, frames: int = 4) -> VJEPA2Model:
    torch.manual_seed(0)
    cfg = VJEPA2Config(
        crop_size=crop, frames_per_clip=frames, hidden_size=hidden, num_attention_heads=heads,
        num_hidden_layers=layers, pred_hidden_size=48, pred_num_attention_heads=2,
        pred_num_hidden_layers=2, pred_num_mask_tokens=3,
    )
    model = VJEPA2Model(cfg).eval()
    # Default init has zero biases and unit norms: randomise them so their mapping is tested too.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.mark.parametrize("hidden,heads", [(96, 4), (128, 4), (96, 2)])  # head dims 24, 32 (2 unrotated), 48
def test_encoder_matches_transformers_vjepa2(hidden: int, heads: int) -> None:
    hf = hf_model(hidden, heads)
    sd = encoder_state_dict(hf.state_dict())
    cfg = infer_encoder_config(sd, num_heads=heads)
    assert cfg["pos_embed"] == "rope" and cfg["embed_dim"] == hidden and cfg["depth"] == 2
    ours = VideoViT(**cfg).eval()
    assert load_encoder_state_dict(ours, sd) == {}
    x = torch.randn(2, 3, 4, 48, 48)
    with torch.no_grad():
        ref = hf(pixel_values_videos=x.permute(0, 2, 1, 3, 4), skip_predictor=True).last_hidden_state
        out = ours(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() < TOL


def test_load_transformers_folder(tmp_path) -> None:
    hf = hf_model(96, 2)  # 2 heads: not what width 96 would suggest (96 // 64 = 1)
    hf.save_pretrained(tmp_path)
    ours = load_encoder(tmp_path, num_heads=2).eval()
    assert ours.num_heads == 2
    x = torch.randn(1, 3, 4, 48, 48)
    with torch.no_grad():
        ref = hf(pixel_values_videos=x.permute(0, 2, 1, 3, 4), skip_predictor=True).last_hidden_state
        assert (ours(x) - ref).abs().max().item() < TOL


def _vjepa2_checkpoint(seed_enc: int = 0, seed_tgt: int = 1, **kw) -> tuple[dict, VideoViT, VideoViT]:
    """A dict laid out as V-JEPA 2's released training checkpoints (DDP + multi-mask wrapper prefixes)."""
    kw = {"embed_dim": 64, "depth": 2, "num_heads": 1, "pos_embed": "rope", **kw}
    torch.manual_seed(seed_enc)
    enc = VideoViT(**kw)
    torch.manual_seed(seed_tgt)
    tgt = VideoViT(**kw)
    pred = {
        "predictor_embed.weight": torch.randn(32, 64), "predictor_embed.bias": torch.randn(32),
        "mask_tokens.0": torch.randn(1, 1, 32), "mask_tokens.1": torch.randn(1, 1, 32),
        "predictor_norm.weight": torch.ones(32), "predictor_norm.bias": torch.zeros(32),
        "predictor_proj.weight": torch.randn(64, 32), "predictor_proj.bias": torch.randn(64),
        **{f"predictor_blocks.0.{k}": v for k, v in Block(32, 2, use_rope=True).state_dict().items()},
    }
    ckpt = {
        "encoder": {f"module.backbone.{k}": v for k, v in enc.state_dict().items()},
        "target_encoder": {f"module.backbone.{k}": v for k, v in tgt.state_dict().items()},
        "predictor": {f"module.backbone.{k}": v for k, v in pred.items()},
        "epoch": 12,
        "loss": 0.31,
        "batch_size": 24,
        "lr": 1e-4,
    }
    return ckpt, enc, tgt


def test_vjepa2_style_checkpoint_loads_both_encoders(tmp_path) -> None:
    ckpt, enc, tgt = _vjepa2_checkpoint()
    path = tmp_path / "vitl.pt"
    torch.save(ckpt, path)
    x = torch.randn(1, 3, 4, 32, 32)
    for key, src in (("target_encoder", tgt), ("encoder", enc)):
        model = load_encoder(path, checkpoint_key=key, num_heads=1).eval()
        assert model.pos_embed == "rope"
        with torch.no_grad():
            assert torch.equal(model(x), src.eval()(x))
    with pytest.raises(CheckpointLoadError, match="'encoder', 'predictor', 'target_encoder'"):
        load_encoder(path, checkpoint_key="ema_encoder")


def test_wrong_width_names_key_and_both_shapes() -> None:
    ckpt, _, _ = _vjepa2_checkpoint()
    sd = encoder_state_dict(ckpt)
    model = VideoViT(embed_dim=96, depth=2, num_heads=1, pos_embed="rope")
    with pytest.raises(CheckpointLoadError) as err:
        load_encoder_state_dict(model, sd, source="vitl.pt")
    msg = str(err.value)
    assert "shape mismatch: patch_embed.proj.weight: checkpoint (64, 3, 2, 16, 16) vs model (96, 3, 2, 16, 16)" in msg
    assert "blocks.1.mlp.fc2.weight: checkpoint (64, 256) vs model (96, 384)" in msg
    # and says what the encoder config must be to fit them (only what differs: the depth is right)
    assert msg.endswith("the weights are an encoder with encoder.embed_dim=64: set that in the config"), msg


def test_missing_and_unexpected_keys_are_all_named() -> None:
    ckpt, _, _ = _vjepa2_checkpoint()
    sd = encoder_state_dict(ckpt)
    del sd["blocks.1.norm2.bias"]
    sd["blocks.2.norm1.weight"] = torch.ones(64)
    model = VideoViT(embed_dim=64, depth=2, num_heads=1, pos_embed="rope")
    with pytest.raises(CheckpointLoadError) as err:
        load_encoder_state_dict(model, sd)
    assert "missing in checkpoint: blocks.1.norm2.bias (model shape (64,))" in str(err.value)
    assert "unexpected in checkpoint: blocks.2.norm1.weight (checkpoint shape (64,))" in str(err.value)


def _vjepa1_table(dim: int, depth: int, size: int) -> torch.Tensor:
    """V-JEPA's stored pos_embed (uniform_power=True, as its pretraining configs set), via numpy."""
    each = int(math.ceil(dim / 6) * 2)
    omega = 1.0 / 10000 ** (np.arange(each // 2, dtype=float) / (each / 2.0))
    d, h, w = np.meshgrid(np.arange(depth, dtype=float), np.arange(size, dtype=float),
                          np.arange(size, dtype=float), indexing="ij")
    parts = []
    for coord in (d, h, w):
        out = np.outer(coord.reshape(-1), omega)
        parts += [np.concatenate([np.sin(out), np.cos(out)], axis=1)]
    return torch.from_numpy(np.concatenate(parts, axis=1)[:, :dim]).float().unsqueeze(0)


def test_vjepa1_sincos_checkpoint_loads(tmp_path) -> None:
    torch.manual_seed(0)
    src = VideoViT(embed_dim=64, depth=2, num_heads=4, pos_embed="sincos")
    state = {f"module.backbone.{k}": v for k, v in src.state_dict().items()}
    state["module.backbone.pos_embed"] = _vjepa1_table(64, 8, 14)  # trained for 16 x 224 x 224
    path = tmp_path / "vitl16.pth.tar"
    torch.save({"encoder": state, "target_encoder": state, "epoch": 300}, path)
    model = load_encoder(path, num_heads=4).eval()
    assert model.pos_embed == "sincos" and model.sincos_uniform_power is True
    x = torch.randn(1, 3, 4, 32, 48)  # any grid: the table is computed for it
    with torch.no_grad():
        assert torch.equal(model(x), src.eval()(x))

    state["module.backbone.pos_embed"] = torch.randn(1, 8 * 14 * 14, 64)  # not a sin-cos table
    torch.save({"target_encoder": state}, path)
    with pytest.raises(CheckpointLoadError, match="not a 3-D sin-cos table"):
        load_encoder(path, num_heads=4)
    rope_model = VideoViT(embed_dim=64, depth=2, num_heads=4, pos_embed="rope")
    state["module.backbone.pos_embed"] = _vjepa1_table(64, 8, 14)
    with pytest.raises(CheckpointLoadError, match="pos_embed='rope'"):
        load_encoder_state_dict(rope_model, encoder_state_dict({"target_encoder": state}))


class _Payload:
    """Unpickling this would call os.system: a stand-in for a malicious checkpoint."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"encoder": {"w": torch.zeros(1)}, "x": _Payload(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused to load"):
        load_encoder(path)
    assert not marker.exists()


def test_transformers_keys_unknown_to_the_converter_are_named() -> None:
    sd = encoder_state_dict(hf_model(96, 4).state_dict())
    raw = hf_model(96, 4).state_dict()
    raw["encoder.layer.0.attention.rotary.freqs"] = torch.zeros(3)
    with pytest.raises(CheckpointLoadError, match="encoder.layer.0.attention.rotary.freqs"):
        encoder_state_dict(raw)
    assert "blocks.0.attn.qkv.weight" in sd and sd["blocks.0.attn.qkv.weight"].shape == (288, 96)
