#!/usr/bin/env bash
# Create (or update) the virtual environment at .venv with emofeat installed in editable mode.
# Every optional stack is installed (extra "all": faces, audio, recipes, dask); more extras
# can be added. Usage: bash scripts/setup.sh [extras]   e.g. bash scripts/setup.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
spec=".[all${extras:+,$extras}]"
# a stamp avoids re-resolving dependencies when pyproject.toml has not changed
stamp=".venv/.emofeat-installed-$(sha256sum pyproject.toml | cut -c1-16)-${extras:-none}"
if [ ! -f "$stamp" ]; then
  log=".venv/pip-install.log"
  if ! .venv/bin/python -m pip install -e "$spec" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup: pip install failed (full log: $log)" >&2
    exit 1
  fi
  touch "$stamp"
fi
