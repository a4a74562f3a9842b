"""Expose a typed function as a subcommand: ``--config FILE``, ``--key value``, ``--print_config``.

jsonargparse reads the function's signature and docstring, so every option has its type,
default and help from one place, and an unknown or misspelt key is refused by name.
"""

from __future__ import annotations

from typing import Any, Callable

from jsonargparse import ActionConfigFile, ArgumentParser


def run_function_cli(
    fn: Callable[..., Any],
    argv: list[str],
    prog: str,
    description: str,
    aliases: dict[str, str] | None = None,
) -> Any:
    """Parse ``argv`` against ``fn``'s signature and call it.

    ``aliases`` maps a short flag to the function's own (``{"--out": "--out_dir"}``), so every
    command takes the same ``--out`` as the design's command table says.
    """
    for short, long in (aliases or {}).items():
        argv = [long + a[len(short):] if a == short or a.startswith(short + "=") else a for a in argv]
    parser = ArgumentParser(prog=prog, description=description, exit_on_error=True)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the options below")
    parser.add_function_arguments(fn, as_group=False)
    cfg = parser.parse_args(argv)  # --print_config is handled (and exits) here
    cfg.pop("config", None)
    init = parser.instantiate_classes(cfg)
    return fn(**init.as_dict())
