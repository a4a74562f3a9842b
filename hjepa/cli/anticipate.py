"""``hjepa anticipate [--config Y] --ckpt C --out DIR``: probe or fine-tune a pretrained H-JEPA for
action anticipation and report class-mean recall@5 (verb, noun, action) with a per-level ablation.

See ``hjepa.anticipation.run.run_anticipation`` for every option and the ``summary.json`` keys;
recipes in ``configs/anticipate/``.
"""

from __future__ import annotations

from pathlib import Path

from hjepa.cli.function_cli import run_function_cli


def main(argv: list[str]) -> None:
    from hjepa.anticipation.run import run_anticipation

    summary = run_function_cli(run_anticipation, argv, "hjepa anticipate", __doc__.split("\n\n")[0],
                               aliases={"--out": "--out_dir"})
    print(format_anticipation(summary))


def format_anticipation(summary: dict) -> str:
    """The end-of-run report: the ablation table (class-mean R@5 and top-1, in %) and the files."""
    table = Path(summary["ablation_table"]).read_text().rstrip()
    return (f"hjepa anticipate ({summary['mode']}): {summary['val_evaluated']} validation actions, "
            f"{summary['wall_time_s']:.0f} s\n{table}\n"
            f"head {summary['main_head']}: {summary['head_checkpoint']}; challenge JSON: {summary['predictions_json']}")
