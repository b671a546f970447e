#!/usr/bin/env bash
# The soak: a thousand orders through a failing KeepinCRM sandbox while the
# daemon is killed at random; exits 1 on a duplicate, lost or wrong deal.
#
#   ./scripts/soak.sh                                  # 1000 orders, seed 1
#   ./scripts/soak.sh --orders 1000 --seed 7 --restarts 200
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup.sh
source scripts/mariadb.sh
ensure_mariadb

.venv/bin/python scripts/soak.py "$@"
