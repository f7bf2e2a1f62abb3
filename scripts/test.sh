#!/usr/bin/env bash
# Install dvsd with its test tools into .venv and run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/core -x
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[test]'
if command -v spread >/dev/null || [ -n "${DVSD_SPREAD_DAEMON:-}" ]; then
    echo "real Spread daemon: ${DVSD_SPREAD_DAEMON:-$(command -v spread)}"
else
    echo "no real Spread daemon (set DVSD_SPREAD_DAEMON or put spread on PATH):" \
         "real-daemon tests will be skipped"
fi
exec .venv/bin/python -m pytest "$@"
