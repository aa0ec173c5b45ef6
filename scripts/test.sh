#!/usr/bin/env bash
# Set up, then run the whole test suite (real loopback servers included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest "$@"
