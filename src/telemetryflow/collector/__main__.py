"""``python -m telemetryflow.collector``: the same as ``telemetryflow collector``."""

from __future__ import annotations

import sys

from telemetryflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["collector", *sys.argv[1:]]))
