"""The ``telemetryflow`` command.

Subcommands live in their own modules, each exposing ``register(subparsers)`` which
adds one or more parsers and sets ``func`` (``args -> int``) as their default::

    # telemetryflow/cli/_setup.py
    def register(subparsers):
        parser = subparsers.add_parser("setup", help="...")
        parser.set_defaults(func=_run)

A new module is picked up by adding its name to :data:`SUBCOMMAND_MODULES`, or
without touching this file at all: any private module of this package
(``telemetryflow.cli._*``) with a ``register`` function is discovered.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from telemetryflow._version import __version__

__all__ = ["SUBCOMMAND_MODULES", "build_parser", "main"]

SUBCOMMAND_MODULES: tuple[str, ...] = (
    "telemetryflow.cli._collector",
    "telemetryflow.cli._query",
    "telemetryflow.cli._status",
    "telemetryflow.cli._demo",
    "telemetryflow.cli._export",
)
"""Modules registering subcommands, in the order ``--help`` lists them."""


def _discovered() -> list[str]:
    found = sorted(
        f"{__name__}.{info.name}"
        for info in pkgutil.iter_modules(__path__)
        if info.name.startswith("_") and not info.name.startswith("__")
    )
    return [name for name in found if name not in SUBCOMMAND_MODULES]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="telemetryflow",
        description="TelemetryFlow: local collector, queries and diagnostics.",
    )
    parser.add_argument("--version", action="version", version=f"telemetryflow {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (*SUBCOMMAND_MODULES, *_discovered()):
        module = importlib.import_module(name)
        register = getattr(module, "register", None)
        if callable(register):
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
