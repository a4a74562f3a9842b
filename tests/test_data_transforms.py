"""Transforms: one crop and flip for all frames, centre crop for evaluation, normalisation."""

from __future__ import annotations

import pytest
import torch

from hjepa.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalClipTransform,
    FrameTooSmall,
    TrainClipTransform,
    check_frame_size,
    to_model_input,
)


def _same_frames_clip(t: int = 6, h: int = 48, w: int = 80) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    frame = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8)
    return frame.expand(t, h, w, 3).clone()


def test_train_crop_and_flip_are_the_same_for_every_frame() -> None:
    clip = _same_frames_clip()
    tf = TrainClipTransform(32, scale=(0.2, 0.5), hflip=True)
    g = torch.Generator().manual_seed(0)
    outs = [tf(clip, g) for _ in range(8)]
    for out in outs:
        assert out.shape == (6, 32, 32, 3) and out.dtype == torch.uint8
        assert all(torch.equal(out[0], out[i]) for i in range(1, 6))  # identical input frames stay identical
    assert len({o[0].sum().item() for o in outs}) > 1  # but the crop changes from clip to clip


def test_train_transform_is_deterministic_given_the_generator() -> None:
    clip = _same_frames_clip()
    tf = TrainClipTransform(32)
    a = tf(clip, torch.Generator().manual_seed(5))
    b = tf(clip, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    state = torch.get_rng_state()
    tf(clip, torch.Generator().manual_seed(5))
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is not consumed


def test_eval_is_resize_shorter_side_then_centre_crop() -> None:
    clip = torch.zeros(2, 40, 100, 3, dtype=torch.uint8)
    clip[:, :, 30:70] = 255  # a white band exactly the centre square
    out = EvalClipTransform(20)(clip)
    assert out.shape == (2, 20, 20, 3)
    assert (out == 255).all()


def test_size_rule() -> None:
    check_frame_size(16, 4000, 16)
    with pytest.raises(FrameTooSmall, match="1x1"):
        check_frame_size(1, 1, 16)


def test_to_model_input_layout_and_values() -> None:
    clip = torch.randint(0, 256, (2, 4, 8, 8, 3), dtype=torch.uint8)
    x = to_model_input(clip)
    assert x.shape == (2, 3, 4, 8, 8) and x.dtype == torch.float32 and x.is_contiguous()
    for c in range(3):
        want = (clip[..., c].float() / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(x[:, c], want, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        to_model_input(clip.float())
