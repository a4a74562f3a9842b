"""The ``hjepa`` console script: one entry point, one subcommand per job.

Each subcommand's module is imported only when it runs, so ``hjepa synth`` does not pay
for Lightning and ``hjepa --help`` is instant.

A user error (bad or all-bad manifest, missing checkpoint, checkpoint of another model, bad
config value, missing annotation columns) ends with a few lines naming the cause and the fix
and exit status 2, without a traceback; ``--debug`` (anywhere on the line) or ``HJEPA_DEBUG=1``
shows the traceback instead.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from hjepa.errors import UserError

COMMANDS: dict[str, tuple[str, str]] = {
    "pretrain": ("hjepa.cli.pretrain", "train H-JEPA (LightningCLI: --config, --trainer.*, --model.*, --data.*)"),
    "synth": ("hjepa.cli.synth", "write the synthetic dataset as video files + manifest + annotations"),
    "evaluate": ("hjepa.cli.evaluate", "prediction error by level and horizon, retrieval, collapse stats, probes"),
    "visualize": ("hjepa.cli.visualize", "pictures of every level's predictions for one video"),
    "anticipate": ("hjepa.cli.anticipate", "probe / fine-tune for action anticipation (EPIC-KITCHENS-100 protocol)"),
    "benchmark": ("hjepa.cli.benchmark", "training-step and decoding throughput beside references"),
    "shard": ("hjepa.cli.shard", "a manifest's videos as streaming shards for --data.shards"),
    "plan": ("hjepa.cli.plan", "goal-reaching episodes in MiniGrid / BabyAI, planning with an action-conditioned model"),
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


DEBUG_FLAG = "--debug"
DEBUG_ENV = "HJEPA_DEBUG"

# Errors whose message is the whole story for a user: their input (a file, a manifest, a config
# value, a checkpoint) is wrong and the message says which and how to fix it. UserError is
# hjepa's own; ValueError is what config checks raise (dataclass and module validation, here and
# in the model layer), FileNotFoundError what a missing path raises. Anything else is a bug and
# keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, ValueError, FileNotFoundError, NotADirectoryError,
                                                IsADirectoryError)


def format_user_error(command: str, err: BaseException) -> str:
    """``hjepa <command>: error: <message>`` and how to see the traceback."""
    message = str(err).strip() or type(err).__name__
    return (f"hjepa {command}: error: {message}\n"
            f"(the traceback: rerun with {DEBUG_FLAG} or {DEBUG_ENV}=1)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != DEBUG_FLAG]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"hjepa: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    log_to_terminal()
    try:
        module = importlib.import_module(COMMANDS[name][0])
        module.main(rest)
    except USER_ERRORS as err:
        if debug:
            raise
        print(format_user_error(name, err), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
