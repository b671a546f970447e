# Sourced by the demo and the test scripts: make sure a MariaDB answers.
#
# Uses the server on $OCSYNC_DB_HOST:$OCSYNC_DB_PORT (default 127.0.0.1:3306) when
# one answers; otherwise starts a private mariadbd in a temporary folder on that
# port, with root and an empty password, and stops it when the script exits.

OCSYNC_DB_HOST="${OCSYNC_DB_HOST:-127.0.0.1}"
OCSYNC_DB_PORT="${OCSYNC_DB_PORT:-3306}"
export OCSYNC_DB_HOST OCSYNC_DB_PORT

mariadb_answers() {
    mysqladmin --protocol=tcp -h"$OCSYNC_DB_HOST" -P"$OCSYNC_DB_PORT" -uroot \
        --connect-timeout=2 ping >/dev/null 2>&1
}

ensure_mariadb() {
    if mariadb_answers; then
        return 0
    fi
    if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
        echo "No MariaDB answers on $OCSYNC_DB_HOST:$OCSYNC_DB_PORT and mariadbd" \
            "is not installed (apt-get install mariadb-server)." >&2
        return 1
    fi

    local datadir
    datadir=$(mktemp -d "${TMPDIR:-/tmp}/ocsync-mariadb.XXXXXX")
    echo "Starting a private MariaDB in $datadir on port $OCSYNC_DB_PORT" >&2
    mariadb-install-db --no-defaults --datadir="$datadir" --user="$(id -un)" \
        --auth-root-authentication-method=normal --skip-test-db >"$datadir/install.log" 2>&1 \
        || { cat "$datadir/install.log" >&2; return 1; }
    PATH="$PATH:/usr/sbin" mariadbd --no-defaults --datadir="$datadir" \
        --user="$(id -un)" --bind-address="$OCSYNC_DB_HOST" --port="$OCSYNC_DB_PORT" \
        --socket="$datadir/mariadb.sock" --pid-file="$datadir/mariadb.pid" \
        --log-error="$datadir/error.log" &
    OCSYNC_PRIVATE_MARIADB_PID=$!
    OCSYNC_PRIVATE_MARIADB_DIR=$datadir
    trap stop_private_mariadb EXIT

    for _ in $(seq 1 60); do
        mariadb_answers && return 0
        sleep 0.5
    done
    echo "The private MariaDB did not start; see $datadir/error.log" >&2
    return 1
}

stop_private_mariadb() {
    if [ -n "${OCSYNC_PRIVATE_MARIADB_PID:-}" ]; then
        kill "$OCSYNC_PRIVATE_MARIADB_PID" 2>/dev/null
        wait "$OCSYNC_PRIVATE_MARIADB_PID" 2>/dev/null
        rm -rf "$OCSYNC_PRIVATE_MARIADB_DIR"
    fi
}
