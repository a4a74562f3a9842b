"""``hjepa anticipate [--config Y] --ckpt C --out DIR``: probe or fine-tune a pretrained H-JEPA for
action anticipation and report class-mean recall@5 (verb, noun, action) with a per-level ablation.

See ``hjepa.anticipation.run.run_anticipation`` for every option and the ``summary.json`` keys;
recipes in ``configs/anticipate/``.
"""

from __future__ import annotations

from hjepa.cli.function_cli import run_function_cli


def main(argv: list[str]) -> None:
    from hjepa.anticipation.run import run_anticipation

    run_function_cli(run_anticipation, argv, "hjepa anticipate", __doc__.split("\n\n")[0], aliases={"--out": "--out_dir"})
