#!/usr/bin/env bash
# Create or reuse the project's virtual environment (.venv), then run the demo or the test suite.
#   bash dev.sh demo [ARGS]   the notebook's workflow, offline, on the bundled model and data
#   bash dev.sh test [ARGS]   the whole test suite (pytest)
set -euo pipefail
cd "$(dirname "$0")"
venv=.venv
python=${PYTHON:-python3}
want=$(cat requirements.txt requirements-data.txt pyproject.toml | sha256sum | cut -d' ' -f1)
stamp=$venv/.bertkit-installed

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setting up $venv (once) ..." >&2
    pip() {  # quiet, minus the noise of package indexes configured but absent on this machine
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2)
    }
    # torch first and pinned: here it is the CPU build on local disk; an unpinned torch pulls GBs of CUDA.
    pip torch==2.13.0
    pip -r requirements.txt
    pip --no-deps -r requirements-data.txt
    pip --no-deps -e .
    echo "$want" > "$stamp"
fi

command=${1:-}
shift || true
case "$command" in
    demo) exec "$venv/bin/python" -m bertkit.demo "$@" ;;
    test) exec "$venv/bin/python" -m pytest -q "$@" ;;
    *) echo "usage: bash dev.sh demo|test [ARGS]" >&2; exit 2 ;;
esac
