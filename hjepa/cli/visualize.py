"""``hjepa visualize --ckpt C --video V --out DIR``: pictures of every level's predictions.

See ``hjepa.viz.visualize.run_visualize`` for every option and the files it writes.
"""

from __future__ import annotations

from hjepa.cli.function_cli import run_function_cli


def main(argv: list[str]) -> None:
    from hjepa.viz.visualize import run_visualize

    run_function_cli(run_visualize, argv, "hjepa visualize", __doc__.split("\n\n")[0], aliases={"--out": "--out_dir"})
