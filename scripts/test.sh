#!/usr/bin/env bash
# Set up, then run the whole test suite (real loopback servers included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
  echo "== chromium (browser tests of the web view)"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing and this is not root: the browser tests will be skipped" >&2
  fi
fi
.venv/bin/python -m pytest "$@"
