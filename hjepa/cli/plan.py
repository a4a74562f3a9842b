"""``hjepa plan --ckpt C [--config Y]``: flat and hierarchical planning in a real environment.

See ``hjepa.planning.run.run_plan`` for every option and what ``summary.json`` holds.
"""

from __future__ import annotations

from hjepa.cli.function_cli import run_function_cli


def main(argv: list[str]) -> None:
    from hjepa.planning.run import run_plan

    run_function_cli(run_plan, argv, "hjepa plan", __doc__.split("\n\n")[0], aliases={"--out": "--out_dir"})
