"""The reference step: V-JEPA 2's masked training step on transformers' ``VJEPA2Model``.

What V-JEPA's training loop does per batch, with transformers' modules (random weights):

1. masks: V-JEPA's multi-block masks (``hjepa.masks.MultiBlockMasks``: 8 short-range blocks at
   0.15 and 2 long-range blocks at 0.7 of the frame, whole clip in time); each block family
   gives one (context, target) pair of token index sets, the context ~10-30 % of the tokens;
2. target: the EMA copy of the encoder on every token, no gradient, ``layer_norm`` of its output;
3. context: per mask pair, the encoder on its context tokens only (patch embedding, then the
   kept tokens through the layers with their own RoPE positions, as V-JEPA's encoder drops
   masked tokens before the blocks). ``VJEPA2Model.forward`` would instead encode every token
   and gather the context afterwards, about twice V-JEPA's cost, so the layers are called here;
4. predictor: ``VJEPA2Model.predictor`` with ``context_mask`` / ``target_mask``, the target
   positions as mask tokens;
5. loss: L1 between the predictions and the layer-normed targets at the target positions,
   averaged over the mask pairs; backward; gradient-norm clipping; AdamW; EMA of the encoder.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hjepa.data.transforms import to_model_input
from hjepa.masks import MultiBlockMasks


def _gather(tokens: Tensor, idx: Tensor) -> Tensor:
    """tokens [B, N, D], idx long [B, K] -> [B, K, D]."""
    return torch.gather(tokens, 1, idx[..., None].expand(-1, -1, tokens.shape[-1]))


class VJEPA2ReferenceStep:
    """V-JEPA 2's training step at given sizes.

    Args:
        dim, depth, heads, mlp_ratio: the encoder.
        pred_dim, pred_depth, pred_heads: the predictor.
        frames, size, patch, tubelet: the clip and its tubelets.
        device, precision: as ``HJEPATrainStep``'s.
        lr, weight_decay, momentum, gradient_clip_val: AdamW, EMA and clipping (values do not
            change the cost).
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float, pred_dim: int, pred_depth: int,
                 pred_heads: int, frames: int, size: int, patch: int, tubelet: int, device: torch.device,
                 precision: str = "fp32", lr: float = 1e-4, weight_decay: float = 0.04, momentum: float = 0.998,
                 gradient_clip_val: float | None = 1.0) -> None:
        from transformers import VJEPA2Config, VJEPA2Model

        cfg = VJEPA2Config(
            crop_size=size, frames_per_clip=frames, patch_size=patch, tubelet_size=tubelet, hidden_size=dim,
            num_hidden_layers=depth, num_attention_heads=heads, mlp_ratio=mlp_ratio,
            pred_hidden_size=pred_dim, pred_num_hidden_layers=pred_depth, pred_num_attention_heads=pred_heads,
            pred_mlp_ratio=mlp_ratio,
        )
        self.model = VJEPA2Model(cfg).to(device).train()
        self.target = copy.deepcopy(self.model.encoder).eval().requires_grad_(False)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.encoder_params = list(self.model.encoder.parameters())
        self.target_params = list(self.target.parameters())
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay)
        self.momentum = momentum
        self.gradient_clip_val = gradient_clip_val
        self.masks = MultiBlockMasks((frames // tubelet, size // patch, size // patch))
        self.device = device
        self.dtype = torch.bfloat16 if precision == "bf16" else None
        self.context_fractions: list[float] = []

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _encode_context(self, embedded: Tensor, keep: Tensor) -> Tensor:
        """embedded [B, N, D] patch tokens, keep long [B, K] -> [B, N, D]: the encoder's output on
        the kept tokens, scattered back to their places (zeros elsewhere, never read)."""
        enc = self.model.encoder
        h = _gather(embedded, keep)
        for layer in enc.layer:
            h = layer(h, keep)[0]  # keep: the tokens' grid indices, from which RoPE takes positions
        h = enc.layernorm(h)
        full = h.new_zeros(embedded.shape[0], embedded.shape[1], h.shape[-1])
        return full.scatter(1, keep[..., None].expand(-1, -1, h.shape[-1]), h)

    def loss(self, batch: dict[str, Any]) -> Tensor:
        """The forward half: masks, target, context, predictor, L1 -> scalar loss (graph kept)."""
        x = to_model_input(batch["clip"]).transpose(1, 2)  # transformers takes [B, T, C, H, W]
        b = x.shape[0]
        masks_enc, masks_pred = self.masks(b)
        with self._autocast():
            with torch.no_grad():
                target = self.target(pixel_values_videos=x).last_hidden_state
                target = F.layer_norm(target, target.shape[-1:])
            embedded = self.model.encoder.embeddings(x)  # [B, N, D]
            losses = []
            for keep, hide in zip(masks_enc, masks_pred):
                keep, hide = keep.to(x.device), hide.to(x.device)
                self.context_fractions.append(keep.shape[1] / embedded.shape[1])
                context = self._encode_context(embedded, keep)
                pred = self.model.predictor(encoder_hidden_states=context, context_mask=[keep],
                                            target_mask=[hide]).last_hidden_state
                losses.append((pred - _gather(target, hide)).abs().mean())
            return torch.stack(losses).mean()

    def __call__(self, batch: dict[str, Any]) -> float:
        """One optimizer step on ``batch`` (``{"clip": uint8 [B, T, H, W, 3]}``); returns the loss."""
        loss = self.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.gradient_clip_val:
            torch.nn.utils.clip_grad_norm_(self.params, self.gradient_clip_val)
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_mul_(self.target_params, self.momentum)
            torch._foreach_add_(self.target_params, self.encoder_params, alpha=1.0 - self.momentum)
        return float(loss.detach())
