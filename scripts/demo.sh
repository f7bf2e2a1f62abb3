#!/usr/bin/env bash
# Install dvsd into .venv, start it alone (single-node transport, emulated
# kernel), run a few dvsctl commands against it, and stop it again.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
echo "installing dvsd into .venv (pip's log: .venv/install.log)"
.venv/bin/pip install --upgrade pip >.venv/install.log 2>&1
.venv/bin/pip install -e . >>.venv/install.log 2>&1 || { tail -30 .venv/install.log; exit 1; }
config=examples/single-node.toml
log=$(mktemp -t dvsd-demo.XXXXXX.log)
.venv/bin/dvsd --config "$config" >/dev/null 2>"$log" &
dvsd_pid=$!
trap 'kill -TERM $dvsd_pid 2>/dev/null; wait $dvsd_pid 2>/dev/null || true' EXIT
# dvsctl status succeeds once dvsd reads its queue; give it up to 10 s.
for _ in $(seq 100); do
    if ! kill -0 "$dvsd_pid" 2>/dev/null; then
        echo "dvsd did not start:"; cat "$log"; exit 1
    fi
    .venv/bin/dvsctl --config "$config" status >/dev/null 2>&1 && break
    sleep 0.1
done
run() { echo "\$ dvsctl $*"; .venv/bin/dvsctl --config "$config" "$@" || echo "(exit $?)"; echo; }
run status
run dvs init
run dvs info
run dc init 0 web
run dc info 0
run dvs nodes
run vmstat
run command -- uname -s
echo "dvsd log: $log"
