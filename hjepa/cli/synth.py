"""``hjepa synth --out DIR``: the built-in synthetic dataset as real video files.

Writes H.264 videos, manifests, EPIC-KITCHENS-100-style annotations and per-frame ground
truth (see ``hjepa.data.synthetic``); point ``hjepa pretrain --data.train=DIR/manifest_train.csv``
at it to exercise the decoding path, or ``hjepa anticipate`` at its annotations.
"""

from __future__ import annotations

import json
from pathlib import Path

from hjepa.cli.function_cli import run_function_cli
from hjepa.data.synthetic import SyntheticConfig, write_synthetic_dataset


def synth(out: str, synthetic: SyntheticConfig = SyntheticConfig(), crf: int = 18) -> dict[str, str]:
    """Write the synthetic dataset.

    Args:
        out: output folder.
        synthetic: generator parameters (``--synthetic.num_train_videos=32`` ...).
        crf: H.264 quality (lower is closer to the generated pixels).
    """
    written = write_synthetic_dataset(out, synthetic, crf=crf)
    summary = {"out": str(out), **{f"path/{k}": str(v) for k, v in written.items()},
               "num_train_videos": synthetic.num_train_videos, "num_val_videos": synthetic.num_val_videos}
    Path(out, "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {synthetic.num_train_videos} + {synthetic.num_val_videos} videos and annotations to {out}")
    return written


def main(argv: list[str]) -> None:
    run_function_cli(synth, argv, "hjepa synth", "Write the synthetic hierarchical dataset to a folder.")
