#!/usr/bin/env bash
# Set up, make sample inputs, extract eGeMAPS + sliding functionals, show the store.
# Works offline once the Python packages are installed (no model download needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/emofeat sample demo/inputs
.venv/bin/emofeat extract --plugin egemaps --plugin functionals demo/inputs -o demo/features.h5
.venv/bin/emofeat inspect demo/features.h5
echo
echo "Features are in $(pwd)/demo/features.h5 (items in demo/features.h5.d/)."
echo "Read them: .venv/bin/python -c \"import emofeat; print(emofeat.open_store('demo/features.h5').to_frame('egemaps', 'lld'))\""
