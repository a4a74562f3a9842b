"""Level 1's encoder over a long clip: the clip is cut into windows, encoded as one batch.

A clip ``[B, C, T, H, W]`` of ``T = num_windows * frames_per_window`` frames becomes
``[B * num_windows, C, frames_per_window, H, W]`` for one ViT pass, so cost grows linearly
with clip length and no token attends across windows. The ViT's tokens are then laid out as
level-1 *steps*:

- ``causal`` attention (block-causal over tubelet time slots): one step per time slot, so
  ``S = T / tubelet`` steps of ``Hg * Wg`` tokens each;
- ``full`` attention (the released V-JEPA encoders): tokens of a time slot see the whole
  window, so the only causal unit is the window; one step per window, its tokens averaged
  over the window's time slots.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class WindowEncoder(nn.Module):
    """Wraps a ``VideoViT`` (``forward(x, masks)`` -> ``[B, N, D]``) into a level-1 step encoder.

    Args:
        vit: the video ViT.
        frames_per_window: frames per ViT pass.
        temporal_attention: ``causal`` or ``full``, as the ViT was built.
    """

    def __init__(self, vit: nn.Module, frames_per_window: int, temporal_attention: str) -> None:
        super().__init__()
        self.vit = vit
        self.frames_per_window = frames_per_window
        self.temporal_attention = temporal_attention
        self.embed_dim = vit.embed_dim

    def no_weight_decay(self) -> set[str]:
        fn = getattr(self.vit, "no_weight_decay", None)
        return {f"vit.{n}" for n in fn()} if fn else set()

    def windows(self, clip: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> [B * num_windows, C, frames_per_window, H, W]."""
        b, c, t, h, w = clip.shape
        f = self.frames_per_window
        if t % f:
            raise ValueError(f"clip has {t} frames, not a multiple of frames_per_window={f}")
        n = t // f
        return clip.reshape(b, c, n, f, h, w).transpose(1, 2).reshape(b * n, c, f, h, w)

    def grid(self, clip_shape: torch.Size | tuple[int, ...]) -> tuple[int, int, int]:
        """(Tg, Hg, Wg) of one window of a clip of this shape."""
        _, _, _, h, w = clip_shape
        return self.vit.grid(self.frames_per_window, h, w)

    def from_window_tokens(self, tokens: torch.Tensor, batch: int, grid: tuple[int, int, int]) -> torch.Tensor:
        """[B * n, Tg * Hg * Wg, D] window tokens -> [B, S, Hg * Wg, D] step tokens."""
        tg, hg, wg = grid
        n = tokens.shape[0] // batch
        x = tokens.reshape(batch, n, tg, hg * wg, tokens.shape[-1])
        if self.temporal_attention == "causal":
            return x.reshape(batch, n * tg, hg * wg, tokens.shape[-1])
        return x.mean(dim=2)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """clip: [B, C, T, H, W] -> step tokens [B, S, Hg * Wg, D]."""
        grid = self.grid(clip.shape)
        tokens = self.vit(self.windows(clip))
        return self.from_window_tokens(tokens, clip.shape[0], grid)

    def draw_kept(self, clip_shape: torch.Size | tuple[int, ...], count: int, device: torch.device) -> torch.Tensor:
        """A random ``count`` of the Hg * Wg positions per window and time slot, long [B * n, Tg, K]
        sorted (the global RNG: resumed runs draw the same). Causal attention draws every slot
        apart; full attention keeps the same positions over a window's slots, whose tokens are
        averaged into its one step."""
        b, _, t, _, _ = clip_shape
        tg, hg, wg = self.grid(clip_shape)
        windows = b * (t // self.frames_per_window)
        draws = windows * tg if self.temporal_attention == "causal" else windows
        kept = torch.rand(draws, hg * wg, device=device).argsort(dim=1)[:, :count].sort(dim=1).values
        if self.temporal_attention == "causal":
            return kept.reshape(windows, tg, count)
        return kept[:, None].expand(windows, tg, count)

    def encode_kept(self, clip: torch.Tensor, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Only the kept tokens encoded (the others are never seen, as V-JEPA's context).

        Args:
            clip: [B, C, T, H, W].
            kept: long [B * n, Tg, K] from ``draw_kept``: the positions each window's slots keep.

        Returns:
            ([B, S, K, D] step tokens, long [B, S, K] the position in its step of each).
        """
        b = clip.shape[0]
        windows, tg, k = kept.shape
        _, hg, wg = self.grid(clip.shape)
        hw = hg * wg
        raster = (kept + hw * torch.arange(tg, device=kept.device)[None, :, None]).reshape(windows, tg * k)
        tokens = self.vit(self.windows(clip), masks=raster)  # [B*n, Tg*K, D], block-causal over the kept slots
        steps = self.from_window_tokens(tokens, b, (tg, 1, k))
        index = kept.reshape(b, -1, k) if self.temporal_attention == "causal" else kept[:, 0].reshape(b, -1, k)
        return steps, index

    def encode_steps(self, clip: torch.Tensor) -> torch.Tensor:
        """Every step encoded alone: clip [B, C, T, H, W] -> [B, S, Hg * Wg, D].

        Causal attention: each tubelet slot is its own one-slot window, so a step's tokens depend
        on its own frames only and every step gets the same (first-slot) time position: nothing
        tells slot 0 of a window from slot 3 but the pixels. Full attention: a step is a window.
        """
        if self.temporal_attention != "causal":
            return self(clip)
        b, c, t, h, w = clip.shape
        f = self.vit.tubelet_size
        if t % self.frames_per_window:
            raise ValueError(f"clip has {t} frames, not a multiple of frames_per_window={self.frames_per_window}")
        steps = clip.reshape(b, c, t // f, f, h, w).transpose(1, 2).reshape(b * (t // f), c, f, h, w)
        tokens = self.vit(steps)  # [B*S, Hg*Wg, D]
        return tokens.reshape(b, t // f, tokens.shape[1], tokens.shape[2])
