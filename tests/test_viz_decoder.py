"""The feature-to-frame decoder learns to render frames from features that encode them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hjepa.viz.decoder import FeatureDecoder, train_decoder


def test_decoder_shapes_for_any_patch_size():
    for p in (4, 6, 16):
        out = FeatureDecoder(8, p, width=32)(torch.randn(2, 3, 5, 8))
        assert out.shape == (2, 3, 3 * p, 5 * p) and out.min() >= 0 and out.max() <= 1


def test_decoder_learns_frames_from_informative_features():
    torch.manual_seed(0)
    n, hg, wg, p = 48, 4, 4, 8
    frames = np.zeros((n, hg * p, wg * p, 3), np.uint8)
    cells = torch.randint(0, hg * wg, (n,))
    for i, c in enumerate(cells.tolist()):
        r, col = divmod(c, wg)
        frames[i, r * p : (r + 1) * p, col * p : (col + 1) * p] = (250, 200, 30)
    # Features: one patch token per cell, "on" where the square is, plus noise.
    feats = 0.1 * torch.randn(n, hg, wg, 16)
    feats[torch.arange(n), cells // wg, cells % wg, :4] += 2.0
    dec, err = train_decoder(feats, frames, patch_size=p, steps=120, batch_size=16, lr=1e-2, width=32)
    mean_frame_err = np.abs(frames / 255.0 - frames.mean(0) / 255.0).mean()
    assert err < 0.5 * mean_frame_err, (err, mean_frame_err)
    rendered = dec.render(feats[:2])
    assert rendered.shape == (2, hg * p, wg * p, 3) and rendered.dtype == np.uint8
    with pytest.raises(ValueError, match="feature maps"):
        train_decoder(feats[:3], frames[:4], patch_size=p, steps=1)
