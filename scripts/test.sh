#!/usr/bin/env bash
# Run the whole test suite, with lint and type checks, on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup.sh
source scripts/mariadb.sh
ensure_mariadb

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
