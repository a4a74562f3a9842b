"""The ablation's heads: their specs, building them, and their training on cached features.

With a frozen backbone the features of every action are computed once (``features.py``) and
kept as a :class:`~hjepa.anticipation.features.FeatureSet`; every head of the ablation then
trains on the same tensors in one loop, one optimiser, one pass over the data per epoch. The heads do not share parameters,
so summing their losses trains each exactly as if it were alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from hjepa.anticipation.annotations import ActionVocab
from hjepa.anticipation.config import AnticipationConfig, AnticipationOptimConfig, HeadConfig
from hjepa.anticipation.features import FeatureSet
from hjepa.anticipation.head import AnticipationHead, head_loss
from hjepa.heads.fit import fit

if TYPE_CHECKING:
    from hjepa.models.hierarchy import HJEPA


@dataclass
class TrainResult:
    """What training the heads gave: each head's last-epoch mean loss, the labelled samples of an
    epoch, and (when the training clips were planned during training) the plan's counts."""

    losses: dict[str, float]
    samples: int
    dropped_unobservable: int | None = None
    clamped: int | None = None


@dataclass(frozen=True)
class HeadSpec:
    """One head of the ablation: its name and the token sets it reads (``ctx1``, ``pred2``, ...)."""

    name: str
    sources: tuple[str, ...]


def ablation_specs(num_levels: int, ablation: bool = True) -> list[HeadSpec]:
    """Heads on levels 1..k (k = 1..L), each with and without the predicted tokens.

    Names: ``L1``, ``L1+pred``, ``L1-2``, ``L1-2+pred``, ... The last one (``L1-L+pred``, every
    level's context and prediction) is the main head. Without ``ablation`` only the main head.
    """
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    specs = []
    for k in range(1, num_levels + 1):
        levels = "L1" if k == 1 else f"L1-{k}"
        ctx = tuple(f"ctx{i}" for i in range(1, k + 1))
        pred = tuple(f"pred{i}" for i in range(1, k + 1))
        specs.append(HeadSpec(levels, ctx))
        specs.append(HeadSpec(f"{levels}+pred", ctx + pred))
    return specs if ablation else specs[-1:]


def main_head_name(num_levels: int) -> str:
    return ablation_specs(num_levels, ablation=False)[0].name


def build_heads(
    specs: Sequence[HeadSpec],
    shapes: Mapping[str, tuple[int, int]],
    num_classes: Mapping[str, int],
    cfg: HeadConfig,
) -> nn.ModuleDict:
    """One :class:`AnticipationHead` per spec, reading the token sets (``name: (tokens, width)``) it names."""
    heads = nn.ModuleDict()
    for spec in specs:
        missing = [s for s in spec.sources if s not in shapes]
        if missing:
            raise ValueError(f"head {spec.name} needs token sets {missing}; available: {sorted(shapes)}")
        heads[spec.name] = AnticipationHead(
            [tuple(shapes[s]) for s in spec.sources], num_classes, cfg.dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio,
            cfg.dropout,
        )
    return heads


def set_input_stats(heads: nn.ModuleDict, specs: Sequence[HeadSpec], tokens: Mapping[str, Tensor]) -> None:
    """Standardise every head's inputs with the statistics of ``tokens`` (the training features)."""
    for spec in specs:
        heads[spec.name].set_input_stats([tokens[s] for s in spec.sources])


def param_groups(module: nn.Module, weight_decay: float, lr: float) -> list[dict]:
    """AdamW groups: no weight decay on biases, norms and embeddings/queries (1-D or 2-D tables)."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(("queries", "source_embed")) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "lr": lr},
              {"params": no_decay, "weight_decay": 0.0, "lr": lr}]
    return [g for g in groups if g["params"]]


def _batches(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None) -> Iterator[Tensor]:
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def fit_heads(
    heads: nn.ModuleDict,
    specs: Sequence[HeadSpec],
    train: FeatureSet,
    opt: AnticipationOptimConfig,
    device: torch.device | str = "cpu",
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Train every head on the labelled rows of ``train``; return each head's last-epoch mean loss."""
    device = torch.device(device)
    heads.to(device).train()
    rows = train.labelled()
    if len(rows) == 0:
        raise ValueError("no training rows with a known action")
    data = train.subset(rows)
    steps_per_epoch = math.ceil(len(data) / opt.batch_size)
    total, warmup = opt.epochs * steps_per_epoch, int(opt.warmup_epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    sums: dict[str, float] = {}
    last: dict[str, float] = {}

    def batches(epoch: int) -> Iterator[Tensor]:
        sums.update({s.name: 0.0 for s in specs})
        return _batches(len(data), opt.batch_size, True, g)

    def loss_fn(idx: Tensor) -> Tensor:
        targets = {k: v[idx].to(device) for k, v in data.targets.items()}
        loss = 0.0
        for spec in specs:
            sources = [data.tokens[s][idx].to(device, non_blocking=True) for s in spec.sources]
            l_head = head_loss(heads[spec.name](sources), targets, opt.loss, opt.label_smoothing,
                               opt.focal_gamma, opt.focal_alpha)
            sums[spec.name] += l_head.item() * len(idx)
            loss = loss + l_head
        return loss  # type: ignore[return-value]

    def on_epoch(epoch: int) -> None:
        last.update({k: v / len(data) for k, v in sums.items()})
        if log is not None:
            log(f"epoch {epoch + 1}/{opt.epochs} " + " ".join(f"{k}={v:.3f}" for k, v in last.items()))

    fit(heads, param_groups(heads, opt.weight_decay, opt.lr), batches, loss_fn, opt.epochs, opt.lr,
        total_steps=total, warmup_steps=warmup, on_epoch=on_epoch)
    return last


@torch.no_grad()
def predict_heads(
    heads: nn.ModuleDict,
    specs: Sequence[HeadSpec],
    feats: FeatureSet,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict[str, dict[str, Tensor]]:
    """Logits ``{head: {output: [N, C]}}`` for every row of ``feats`` (on the CPU)."""
    device = torch.device(device)
    heads.to(device).eval()
    out: dict[str, dict[str, list[Tensor]]] = {s.name: {} for s in specs}
    for idx in _batches(len(feats), batch_size, False, None):
        for spec in specs:
            logits = heads[spec.name]([feats.tokens[s][idx].to(device) for s in spec.sources])
            for k, v in logits.items():
                out[spec.name].setdefault(k, []).append(v.float().cpu())
    return {h: {k: torch.cat(v) for k, v in d.items()} for h, d in out.items()}


def train_on_features(heads: nn.ModuleDict, specs: Sequence[HeadSpec], train: FeatureSet, opt: AnticipationOptimConfig,
                      device: torch.device | str = "cpu", seed: int = 0,
                      log: Callable[[str], None] | None = None) -> TrainResult:
    """Frozen backbone: standardise every head's inputs with the labelled training rows, then fit them."""
    labelled = train.subset(train.labelled())
    set_input_stats(heads, specs, labelled.tokens)
    return TrainResult(fit_heads(heads, specs, train, opt, device, seed, log), len(labelled))


def save_head(path: Path, cfg: AnticipationConfig, heads: nn.ModuleDict, specs: list[HeadSpec],
              shapes: dict[str, tuple[int, int]],
              vocab: ActionVocab, model: "HJEPA", main: str) -> Path:
    """Every head's weights with what rebuilds them (plain values; loads with ``weights_only=True``).

    In fine-tune mode the fine-tuned backbone's weights and config are stored as well.
    """
    ckpt: dict[str, Any] = {
        "main_head": main,
        "heads": {s.name: {"sources": list(s.sources), "state_dict": heads[s.name].state_dict()} for s in specs},
        "shapes": {k: list(v) for k, v in shapes.items()},
        "num_classes": vocab.num_classes,
        "head_config": asdict(cfg.head),
        "vocab": vocab.to_dict(),
        "config": cfg.to_dict(),
    }
    if cfg.mode == "finetune":
        ckpt["backbone_state_dict"] = model.state_dict()
        ckpt["model_config"] = model.config.to_dict()
    torch.save(ckpt, path)
    return path


def load_head(path: str | Path) -> tuple[nn.ModuleDict, list[HeadSpec], ActionVocab, dict[str, Any]]:
    """Rebuild the heads saved by :func:`save_head`: (heads, specs, vocab, the raw checkpoint)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    specs = [HeadSpec(name, tuple(h["sources"])) for name, h in ckpt["heads"].items()]
    shapes = {k: tuple(v) for k, v in ckpt["shapes"].items()}
    heads = build_heads(specs, shapes, ckpt["num_classes"], HeadConfig(**ckpt["head_config"]))
    for s in specs:
        heads[s.name].load_state_dict(ckpt["heads"][s.name]["state_dict"], strict=True)
    return heads, specs, ActionVocab.from_dict(ckpt["vocab"]), ckpt
