"""``telemetryflow demo``: a collector, an instrumented app and a worker, for a few seconds."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="run an instrumented app against a local collector")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    print("telemetryflow demo: not available in this build", file=sys.stderr)
    return 1
