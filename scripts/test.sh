#!/usr/bin/env bash
# Install dvsd with its test tools into .venv and run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/core -x
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
echo "installing dvsd and its test tools into .venv (pip's log: .venv/install.log)"
.venv/bin/pip install --upgrade pip >.venv/install.log 2>&1
.venv/bin/pip install -e '.[test]' >>.venv/install.log 2>&1 || {
    tail -30 .venv/install.log; exit 1; }
if command -v spread >/dev/null || [ -n "${DVSD_SPREAD_DAEMON:-}" ]; then
    echo "real Spread daemon: ${DVSD_SPREAD_DAEMON:-$(command -v spread)}"
else
    echo "no real Spread daemon (set DVSD_SPREAD_DAEMON or put spread on PATH):" \
         "real-daemon tests will be skipped"
fi
exec .venv/bin/python -m pytest "$@"
