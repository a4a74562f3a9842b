"""``hjepa evaluate --ckpt C --out DIR``: prediction error by level and horizon (in seconds),
copy-the-present and mean-target baselines, retrieval, collapse statistics and probes.

See ``hjepa.eval.evaluate.run_evaluate`` for every option and the ``summary.json`` keys.
"""

from __future__ import annotations

from hjepa.cli.function_cli import run_function_cli


def main(argv: list[str]) -> None:
    from hjepa.eval.evaluate import format_evaluation, run_evaluate
    from hjepa.viz.evaluation_plots import draw_evaluation

    summary = run_function_cli(run_evaluate, argv, "hjepa evaluate", __doc__.split("\n\n")[0],
                               aliases={"--out": "--out_dir"})
    summary = draw_evaluation(summary)  # the numbers first, then their figures
    print(format_evaluation(summary))
