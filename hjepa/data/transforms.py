"""Clip transforms (torchvision.transforms.v2 on videos) and normalisation on the device.

Data stays ``uint8`` from the decoder to the device: the loader crops and resizes uint8 clips
``[T, H, W, C]`` in the workers, and :func:`to_model_input` turns a batch into normalised float
``[B, C, T, H, W]`` where the model runs (4x less to copy than float32).

* Training (:class:`TrainClipTransform`): one ``RandomResizedCrop`` and one horizontal flip drawn
  per clip and applied to every frame (v2 treats a ``tv_tensors.Video`` as one sample).
* Evaluation (:class:`EvalClipTransform`): resize the shorter side to ``resolution`` and take the
  centre square. It is computed as centre square crop, then resize: the same pixels are kept, and
  a 4000x16 frame is not first blown up to 16000x64.

Size rule: a frame whose shorter side is below ``min_side`` (default 16 px) holds too little to
train on and is refused (:func:`check_frame_size`; datasets skip and count it). Any aspect ratio
is accepted: crops keep their aspect within ``ratio``, so a 4000x16 video trains on a 21x16 centre
crop (torchvision's fallback when no crop of the asked area fits) and evaluates on its centre
16x16 square, both resized to ``resolution``.

Randomness comes from a ``torch.Generator`` passed in by the dataset (per worker and rank), so
the global RNG of the process is not consumed.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from hjepa.input_settings import IMAGENET_MEAN, IMAGENET_STD  # the normalisation every checkpoint records


class FrameTooSmall(ValueError):
    """Frames smaller than the minimum side."""


def check_frame_size(height: int, width: int, min_side: int) -> None:
    """Raise :class:`FrameTooSmall` when ``min(height, width) < min_side``."""
    if min(height, width) < min_side:
        raise FrameTooSmall(f"frames are {width}x{height}, the shorter side must be >= {min_side} px")


def _as_video(clip: torch.Tensor) -> tv_tensors.Video:
    """uint8 [T, H, W, C] -> Video [T, C, H, W] (a view)."""
    if clip.ndim != 4 or clip.shape[-1] not in (1, 3):
        raise ValueError(f"expected a clip [T, H, W, C], got shape {tuple(clip.shape)}")
    return tv_tensors.Video(clip.permute(0, 3, 1, 2))


def _as_clip(video: torch.Tensor) -> torch.Tensor:
    """[T, C, H, W] -> contiguous [T, H, W, C]."""
    return video.as_subclass(torch.Tensor).permute(0, 2, 3, 1).contiguous()


class TrainClipTransform:
    """Random resized crop + horizontal flip, the same for all frames of a clip.

    clip: uint8 [T, H, W, C] -> uint8 [T, resolution, resolution, C].
    """

    def __init__(
        self,
        resolution: int,
        scale: Sequence[float] = (0.3, 1.0),
        ratio: Sequence[float] = (0.75, 1.35),
        hflip: bool = True,
    ) -> None:
        self.resolution = int(resolution)
        steps: list[v2.Transform] = [
            v2.RandomResizedCrop(
                (self.resolution, self.resolution), scale=tuple(scale), ratio=tuple(ratio), antialias=True
            )
        ]
        if hflip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
        self.transform = v2.Compose(steps)

    def __call__(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        video = _as_video(clip)
        if generator is None:
            return _as_clip(self.transform(video))
        # v2 draws from the global RNG: run it on a fork seeded from our generator.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _as_clip(self.transform(video))


class EvalClipTransform:
    """Centre square, resized: clip uint8 [T, H, W, C] -> uint8 [T, resolution, resolution, C]."""

    def __init__(self, resolution: int) -> None:
        self.resolution = int(resolution)

    def __call__(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        video = _as_video(clip)
        side = min(video.shape[-2:])
        video = F.center_crop(video, [side, side])
        if side != self.resolution:
            video = F.resize(video, [self.resolution, self.resolution], antialias=True)
        return _as_clip(video)


def to_model_input(
    clip: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normalise a uint8 batch on its device: clip uint8 [B, T, H, W, C] -> float [B, C, T, H, W].

    ``(x / 255 - mean) / std`` per channel (ImageNet statistics by default), in one copy.
    """
    if clip.dtype != torch.uint8 or clip.ndim != 5:
        raise ValueError(f"expected uint8 [B, T, H, W, C], got {clip.dtype} {tuple(clip.shape)}")
    c = clip.shape[-1]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"{c} channels but {len(mean)} means and {len(std)} stds")
    b, t, h, w, _ = clip.shape
    x = torch.empty((b, c, t, h, w), dtype=dtype, device=clip.device)
    x.copy_(clip.permute(0, 4, 1, 2, 3))  # [B, C, T, H, W]
    m = torch.tensor(mean, dtype=dtype, device=clip.device).view(1, c, 1, 1, 1) * 255.0
    s = torch.tensor(std, dtype=dtype, device=clip.device).view(1, c, 1, 1, 1) * 255.0
    return x.sub_(m).div_(s)
