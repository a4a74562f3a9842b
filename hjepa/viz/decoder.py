"""A small decoder from frozen level-1 patch features to frames.

It is trained after the fact on (target features, frame) pairs and never touches the
H-JEPA's weights; its only use is to render a *predicted* representation as a picture
("what the model expects to see"). Being small and trained on few frames, it shows
layout and colour, not detail.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from hjepa.heads.fit import fit

__all__ = ["FeatureDecoder", "train_decoder"]


class FeatureDecoder(nn.Module):
    """Patch features ``[N, Hg, Wg, D]`` -> RGB ``[N, 3, Hg*p, Wg*p]`` in [0, 1].

    A 1x1 projection followed by ``ceil(log2 p)`` (nearest upsample x2, 3x3 conv, GELU)
    stages, and a resize to the exact size when ``p`` is not a power of two.

    Args:
        dim: feature width D.
        patch_size: p, pixels per patch side.
        width: channels after the projection (halved per stage, at least 16).
    """

    def __init__(self, dim: int, patch_size: int, width: int = 128) -> None:
        super().__init__()
        self.patch_size = patch_size
        stages = max(1, math.ceil(math.log2(patch_size)))
        self.proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width))
        layers: list[nn.Module] = []
        c = width
        for _ in range(stages):
            c_out = max(16, c // 2)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c_out, 3, padding=1), nn.GELU()]
            c = c_out
        layers.append(nn.Conv2d(c, 3, 3, padding=1))
        self.up = nn.Sequential(*layers)

    def forward(self, feats: Tensor) -> Tensor:
        """``feats: [N, Hg, Wg, D]`` -> ``[N, 3, Hg*p, Wg*p]``."""
        n, hg, wg, _ = feats.shape
        x = self.proj(feats.float()).permute(0, 3, 1, 2)  # [N, C, Hg, Wg]
        x = self.up(x)
        size = (hg * self.patch_size, wg * self.patch_size)
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return torch.sigmoid(x)

    @torch.no_grad()
    def render(self, feats: Tensor) -> np.ndarray:
        """``feats: [N, Hg, Wg, D]`` -> ``uint8 [N, H, W, 3]``."""
        self.eval()
        out = self(feats).permute(0, 2, 3, 1).clamp(0, 1)
        return (out * 255).round().to(torch.uint8).cpu().numpy()


def train_decoder(
    feats: Tensor,
    frames: Tensor | np.ndarray,
    patch_size: int,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 5e-3,
    width: int = 128,
    seed: int = 0,
) -> tuple[FeatureDecoder, float]:
    """Fit a :class:`FeatureDecoder` on frozen features.

    Args:
        feats: ``[N, Hg, Wg, D]`` level-1 target features, one per frame.
        frames: ``uint8 [N, H, W, 3]`` the frame each feature map should render to
            (resized to ``Hg*p x Wg*p`` if needed).
        patch_size: p.
        steps: AdamW steps on random minibatches.
        width: decoder channels after the projection.
    Returns:
        ``(decoder, final_l1)``: the trained decoder and its mean absolute pixel error in
        [0, 1] units on all ``N`` pairs.
    """
    feats = feats.detach().float().cpu()
    target = torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2).float() / 255.0  # [N, 3, H, W]
    if feats.shape[0] != target.shape[0]:
        raise ValueError(f"decoder got {feats.shape[0]} feature maps but {target.shape[0]} frames")
    size = (feats.shape[1] * patch_size, feats.shape[2] * patch_size)
    if target.shape[-2:] != size:
        target = F.interpolate(target, size=size, mode="bilinear", align_corners=False)
    # Callers often run under no_grad (inference code); training here needs autograd.
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(seed)
        dec = FeatureDecoder(feats.shape[-1], patch_size, width)
        n = feats.shape[0]
        # one random minibatch per step, the lr a cosine to 0 over the steps
        fit(dec, dec.parameters(), lambda _: [torch.randint(0, n, (min(batch_size, n),))],
            lambda idx: F.mse_loss(dec(feats[idx]), target[idx]), steps, lr, 1e-4, total_steps=steps)
    dec.eval()
    with torch.no_grad():
        err = torch.cat([(dec(feats[i : i + 64]) - target[i : i + 64]).abs().flatten(1).mean(1)
                         for i in range(0, n, 64)]).mean().item()
    return dec, err
