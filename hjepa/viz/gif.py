"""Animated GIFs with PIL: labelled side-by-side panels over time."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["resize_image", "compose_panels", "write_gif"]


def _to_uint8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    return img[..., :3]


def resize_image(img: np.ndarray, height: int, width: int | None = None, nearest: bool = False) -> np.ndarray:
    """Resize ``[H, W, 3]`` (uint8 or float in [0, 1]) to ``height`` (and ``width``, default keeps aspect).

    ``nearest`` keeps the patch grid of a feature map visible instead of blurring it.
    """
    img = _to_uint8(img)
    if width is None:
        width = max(1, round(img.shape[1] * height / img.shape[0]))
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(img).resize((width, height), resample))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def compose_panels(
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    height: int = 128,
    nearest: Sequence[bool] | None = None,
    footer: str | None = None,
    pad: int = 6,
) -> np.ndarray:
    """Lay images side by side at one height with a label above each.

    Args:
        images: ``[H, W, 3]`` arrays.
        labels: one label per image.
        height: panel height in pixels.
        nearest: per image, resize with nearest-neighbour (feature maps).
        footer: optional line of text under the panels (e.g. the time).
    Returns:
        ``uint8 [H', W', 3]`` on a white background.
    """
    if len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} labels")
    nearest = list(nearest) if nearest is not None else [False] * len(images)
    panels = [resize_image(im, height, nearest=n) for im, n in zip(images, nearest)]
    label_h, footer_h = 20, (20 if footer else 0)
    width = sum(p.shape[1] for p in panels) + pad * (len(panels) + 1)
    canvas = Image.new("RGB", (width, label_h + height + footer_h + 2 * pad), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(13)
    x = pad
    for p, lab in zip(panels, labels):
        canvas.paste(Image.fromarray(p), (x, label_h + pad))
        draw.text((x + p.shape[1] / 2, pad + label_h / 2 - 2), lab, fill=(30, 30, 30), font=font, anchor="mm")
        x += p.shape[1] + pad
    if footer:
        draw.text((width / 2, label_h + height + pad + footer_h / 2 + 2), footer, fill=(60, 60, 60), font=font,
                  anchor="mm")
    return np.asarray(canvas)


def write_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 4.0, loop: int = 0) -> Path:
    """Write ``frames`` (``[H, W, 3]`` each, same size) as an animated GIF.

    Args:
        fps: frames per second of the animation (GIF delays are whole centiseconds).
        loop: 0 repeats forever.
    """
    if not frames:
        raise ValueError("write_gif needs at least one frame")
    shapes = {np.asarray(f).shape for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"GIF frames must share one size, got {sorted(shapes)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # An adaptive palette per frame keeps PCA colours faithful; no dithering keeps maps flat.
    images = [
        Image.fromarray(_to_uint8(f)).quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        for f in frames
    ]
    duration = max(20, round(1000.0 / fps))
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=loop, disposal=1)
    return path
