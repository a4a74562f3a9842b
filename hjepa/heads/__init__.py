"""Small trainable heads on top of a backbone's tokens, shared by every task.

``pooling`` holds the one attentive pooler (learned queries cross-attend the tokens) that
evaluation's attentive probe and the anticipation head are built on; ``fit`` the one small
training loop (AdamW, optional warmup-cosine, epochs of minibatches, optional choice of the
best state on held-out data) that probes, heads, fine-tuning and the viz decoder train with.
"""

from hjepa.heads.fit import FitResult, fit, lr_factor
from hjepa.heads.pooling import AttentivePooler, CrossAttentionBlock

__all__ = ["AttentivePooler", "CrossAttentionBlock", "FitResult", "fit", "lr_factor"]
