#!/usr/bin/env bash
# The demo: load OpenCart dumps into MariaDB, sync them into a local KeepinCRM
# sandbox with `ocsync run --once`, and print the deals that arrived.
#
#   ./scripts/demo.sh                      # the sample shops site_a and site_b
#   ./scripts/demo.sh my_shop.sql          # a dump of your own shop
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup.sh
source scripts/mariadb.sh
ensure_mariadb

.venv/bin/python scripts/demo.py "$@"
