# Sourced by the demo and the test scripts: a virtualenv in .venv with ocsync and
# its test tools installed (again only when pyproject.toml changed).

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "ocsync needs Python 3.11 or newer; set PYTHON to one." >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.ocsync-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "Installing ocsync and its test tools into .venv" >&2
    if ! .venv/bin/python -m pip install --quiet -e '.[test]' >.venv/install.log 2>&1
    then
        cat .venv/install.log >&2
        exit 1
    fi
    touch "$stamp"
fi
