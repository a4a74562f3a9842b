"""The ``hjepa`` console script: one entry point, one subcommand per job.

Each subcommand's module is imported only when it runs, so ``hjepa synth`` does not pay
for Lightning and ``hjepa --help`` is instant.
"""

from __future__ import annotations

import importlib
import logging
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "pretrain": ("hjepa.cli.pretrain", "train H-JEPA (LightningCLI: --config, --trainer.*, --model.*, --data.*)"),
    "synth": ("hjepa.cli.synth", "write the synthetic dataset as video files + manifest + annotations"),
    "evaluate": ("hjepa.cli.evaluate", "prediction error by level and horizon, retrieval, collapse stats, probes"),
    "visualize": ("hjepa.cli.visualize", "pictures of every level's predictions for one video"),
    "anticipate": ("hjepa.cli.anticipate", "probe / fine-tune for action anticipation (EPIC-KITCHENS-100 protocol)"),
    "benchmark": ("hjepa.cli.benchmark", "training-step and decoding throughput beside references"),
    "export": ("hjepa.cli.export", "weights as safetensors + config.json, loadable without Lightning"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return f"usage: hjepa <command> [options]\n\ncommands:\n{rows}\n\n'hjepa <command> --help' shows a command's options."


def log_to_terminal() -> None:
    """Show hjepa's progress lines (INFO and up) on stderr.

    Python shows only warnings of a logger nobody configured, so without this a long
    ``anticipate`` or ``evaluate`` run is silent until it ends. Only the ``hjepa`` logger is
    touched: Lightning configures its own. Records still propagate, so handlers on the root
    logger (pytest's capture, a user's log file) keep receiving them.
    """
    logger = logging.getLogger("hjepa")
    if not logger.handlers and not logging.getLogger().handlers:  # a configured root already shows them
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"hjepa: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    log_to_terminal()
    module = importlib.import_module(COMMANDS[name][0])
    module.main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
