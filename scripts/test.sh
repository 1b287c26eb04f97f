#!/usr/bin/env bash
# Set up, then lint, type-check and run the tests.
# The record-store tests run against a real PostgreSQL server: Debian's package is
# installed here if missing (as root), and the test fixture starts a private cluster on
# loopback from its binaries (stopping and restarting it for the outage test).
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
bash scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
