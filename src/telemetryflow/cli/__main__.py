"""``python -m telemetryflow.cli``: the same command as the ``telemetryflow`` script."""

import sys

from telemetryflow.cli import main

if __name__ == "__main__":
    sys.exit(main())
