#!/usr/bin/env bash
# Set up, then lint, type-check and run the tests.
# The record-store tests run against a real PostgreSQL server: Debian's package is
# installed here if missing (as root), and the test fixture starts a private cluster on
# loopback from its binaries (stopping and restarting it for the outage test). The
# line-feedback tests need Mosquitto and Node.js (installed the same way).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pg_ctl >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
  else
    echo "note: PostgreSQL is not installed (apt-get install postgresql); its tests will be skipped" >&2
  fi
fi
# Line-feedback peers: a real Mosquitto broker, and node-opcua (from the npm registry) as an
# independent OPC UA client. The tests start their own broker. The dashboard's browser tests
# drive Debian's Chromium through Playwright (Playwright cannot download its own browser here).
need=()
# The memory-bank search kernel is C, compiled when Huoyan is installed.
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
[ -x /usr/bin/chromium ] || need+=(chromium)
# Chinese text on the dashboard (火眼, names, the zh-CN pages) needs a CJK font in the browser.
[ -d /usr/share/fonts/opentype/noto ] || need+=(fonts-noto-cjk)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "note: missing ${need[*]}; their tests will be skipped" >&2
  fi
fi
if command -v npm >/dev/null 2>&1; then
  npm ci --prefix tests/opcua_peer --no-audit --no-fund --loglevel=error
fi
bash scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
