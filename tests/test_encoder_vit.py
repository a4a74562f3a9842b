"""VideoViT: gradients, shapes, sizes, exact temporal causality, masking."""

from __future__ import annotations

import pytest
import torch

from hjepa.models.vit import ENCODERS, VideoViT, block_causal_mask, build_encoder

SCHEMES = [(pe, ta) for pe in ("sincos", "rope") for ta in ("full", "causal")]


def micro(**kw) -> VideoViT:
    torch.manual_seed(0)
    return build_encoder("micro", **kw)


@pytest.mark.parametrize("pos_embed,temporal", SCHEMES)
@pytest.mark.parametrize("with_masks", [False, True])
def test_every_parameter_gets_a_gradient(pos_embed: str, temporal: str, with_masks: bool) -> None:
    model = micro(pos_embed=pos_embed, temporal_attention=temporal, drop_path_rate=0.1)
    x = torch.randn(2, 3, 4, 32, 32)
    masks = [torch.tensor([[0, 3, 5, 6], [1, 2, 4, 7]])] if with_masks else None
    out = model(x, masks=masks)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("pos_embed", ["sincos", "rope"])
def test_shapes_for_several_sizes_without_rebuilding(pos_embed: str) -> None:
    model = micro(pos_embed=pos_embed).eval()
    with torch.no_grad():
        for T, H, W in [(2, 16, 16), (4, 32, 48), (6, 64, 32), (8, 16, 80)]:
            out = model(torch.randn(1, 3, T, H, W))
            assert out.shape == (1, (T // 2) * (H // 16) * (W // 16), 64)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "size,fragments",
    [((3, 32, 32), ["T=3", "tubelet_size=2"]), ((4, 40, 32), ["H=40", "patch_size=16"]), ((4, 32, 8), ["W=8"])],
)
def test_wrong_size_names_the_numbers(size, fragments) -> None:
    model = micro()
    with pytest.raises(ValueError) as err:
        model(torch.randn(1, 3, *size))
    for frag in fragments:
        assert frag in str(err.value)


def test_wrong_channels_and_masks_are_refused() -> None:
    model = micro()
    with pytest.raises(ValueError, match="C=1"):
        model(torch.randn(1, 1, 2, 16, 16))
    with pytest.raises(ValueError, match=r"\[0, 4\], outside the 4 tokens"):
        model(torch.randn(1, 3, 2, 32, 32), masks=torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match="same K"):
        model(torch.randn(1, 3, 2, 32, 32), masks=[torch.tensor([[0, 1]]), torch.tensor([[0, 1, 2]])])


def _change_from_frame(x: torch.Tensor, frame: int) -> torch.Tensor:
    y = x.clone()
    y[:, :, frame:] = torch.randn_like(y[:, :, frame:]) * 3
    return y


@pytest.mark.parametrize("pos_embed", ["sincos", "rope"])
def test_causal_mode_is_exactly_causal_in_time(pos_embed: str) -> None:
    model = micro(pos_embed=pos_embed, temporal_attention="causal").double().eval()
    x = torch.randn(2, 3, 8, 32, 32, dtype=torch.float64)  # 4 time slots of 2x2 tokens
    per_slot = 4
    with torch.no_grad():
        ref = model(x)
        for slot in (1, 2, 3):
            out = model(_change_from_frame(x, 2 * slot))
            assert torch.equal(out[:, : slot * per_slot], ref[:, : slot * per_slot]), f"slot < {slot} changed"
            assert not torch.allclose(out[:, slot * per_slot :], ref[:, slot * per_slot :])


def test_full_mode_is_not_causal() -> None:
    """The same change leaks into earlier slots without the causal mask (so the test above can fail)."""
    model = micro(temporal_attention="full").double().eval()
    x = torch.randn(1, 3, 8, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        ref, out = model(x), model(_change_from_frame(x, 6))
    assert (out[:, :12] - ref[:, :12]).abs().max() > 1e-6


@pytest.mark.parametrize("pos_embed", ["sincos", "rope"])
def test_causal_mode_with_masks(pos_embed: str) -> None:
    model = micro(pos_embed=pos_embed, temporal_attention="causal").double().eval()
    x = torch.randn(2, 3, 8, 32, 32, dtype=torch.float64)
    # Kept tokens from every time slot (slot = index // 4), different per sample and mask set.
    masks = [torch.tensor([[0, 2, 5, 9, 10, 13, 15], [1, 3, 4, 6, 11, 12, 14]]),
             torch.tensor([[1, 4, 7, 8, 9, 12, 15], [0, 5, 6, 10, 11, 13, 14]])]
    slots = torch.cat(masks) // 4  # [B*M, K]
    with torch.no_grad():
        ref = model(x, masks=masks)
        for slot in (1, 2, 3):
            out = model(_change_from_frame(x, 2 * slot), masks=masks)
            early = slots < slot
            assert torch.equal(out[early], ref[early]), f"a kept token before slot {slot} changed"
            assert not torch.allclose(out[~early], ref[~early])


def test_block_causal_mask_layout() -> None:
    mask = block_causal_mask(torch.tensor([0, 0, 1, 2]))
    expected = torch.tensor(
        [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool
    )
    assert mask.shape == (1, 1, 4, 4) and torch.equal(mask[0, 0], expected)


@pytest.mark.parametrize("pos_embed,temporal", SCHEMES)
def test_dropped_patches_are_not_used(pos_embed: str, temporal: str) -> None:
    model = micro(pos_embed=pos_embed, temporal_attention=temporal).double().eval()
    x = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)  # grid (2, 2, 2): 8 tokens
    keep = torch.tensor([[0, 3, 5, 6], [1, 2, 4, 7]])
    with torch.no_grad():
        ref = model(x, masks=keep)
        y = x.clone()
        # Token 7 = (t=1, h=1, w=1) is dropped for sample 0: frames 2-3, rows 16-31, cols 16-31.
        y[0, :, 2:4, 16:32, 16:32] += 5.0
        # Token 0 = (t=0, h=0, w=0) is dropped for sample 1.
        y[1, :, 0:2, 0:16, 0:16] -= 5.0
        out = model(y, masks=keep)
        assert out.shape == (2, 4, 64)
        assert torch.equal(out, ref)
        # Changing a kept patch does change the output (the check above can fail).
        y[0, :, 0:2, 0:16, 0:16] += 5.0
        assert not torch.allclose(model(y, masks=keep)[0], ref[0])


def test_several_mask_sets_stack_on_batch() -> None:
    model = micro().eval()
    x = torch.randn(3, 3, 4, 32, 32)
    m1 = torch.tensor([[0, 1], [2, 3], [4, 5]])
    m2 = torch.tensor([[6, 7], [0, 7], [1, 2]])
    with torch.no_grad():
        both = model(x, masks=[m1, m2])
        assert both.shape == (6, 2, 64)
        # Full attention among kept tokens only: each set equals encoding it alone.
        assert torch.allclose(both[3:], model(x, masks=m2), atol=1e-6)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    x = torch.randn(2, 3, 4, 32, 32)
    grads = []
    for ckpt in (False, True):
        model = micro(pos_embed="rope", temporal_attention="causal", grad_checkpointing=ckpt)
        model(x).sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5), name


def test_registry_sizes_and_unknown_name() -> None:
    expected = {
        "micro": (64, 2, 4), "tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12),
        "large": (1024, 24, 16), "huge": (1280, 32, 16), "giant": (1408, 40, 22),
    }
    assert set(ENCODERS) == set(expected)
    for name, (dim, depth, heads) in expected.items():
        with torch.device("meta"):  # no memory, no init cost: sizes only
            model = build_encoder(name)
        assert (model.embed_dim, model.depth, model.num_heads) == (dim, depth, heads)
        assert len(model.blocks) == depth
    with torch.device("meta"):
        giant = build_encoder("giant")
    assert giant.blocks[0].mlp.fc1.out_features == 6144  # V-JEPA 2 ViT-g: 1408 * 48 / 11
    with torch.device("meta"):
        small = build_encoder("small")
    assert 21e6 < sum(p.numel() for p in small.parameters()) < 23e6  # ViT-S/16 with a 2x16x16 tubelet
    with pytest.raises(ValueError, match="micro"):
        build_encoder("gigantic")
    assert build_encoder("micro", depth=3).depth == 3


def test_no_weight_decay_lists_biases_and_norms_only() -> None:
    names = micro().no_weight_decay()
    assert "norm.weight" in names and "blocks.0.attn.qkv.bias" in names and "blocks.1.norm1.weight" in names
    assert "blocks.0.attn.qkv.weight" not in names and "patch_embed.proj.weight" not in names


def test_patch_embed_matches_conv3d() -> None:
    model = micro()
    x = torch.randn(2, 3, 4, 32, 48)
    conv = model.patch_embed.proj(x).flatten(2).transpose(1, 2)
    assert torch.allclose(model.patch_embed(x), conv, atol=1e-5)


@pytest.mark.parametrize("pos_embed,temporal", SCHEMES)
def test_training_after_an_inference_mode_pass(pos_embed: str, temporal: str) -> None:
    """Grid caches filled during a validation loop (inference mode) must not break training."""
    model = micro(pos_embed=pos_embed, temporal_attention=temporal)
    x = torch.randn(1, 3, 2, 48, 16)  # a grid no other test uses, so the caches start empty
    with torch.inference_mode():
        model.eval()(x)
    model.train()(x).sum().backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None
