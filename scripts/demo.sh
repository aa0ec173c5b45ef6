#!/usr/bin/env bash
# Set up, then run the end-to-end demo: a local collector, an instrumented app and
# worker sending to it, and a summary of what arrived.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/telemetryflow demo "$@"
