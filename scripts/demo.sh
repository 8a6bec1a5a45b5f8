#!/usr/bin/env bash
# Set up, make sample inputs, extract eGeMAPS + sliding functionals, show the store.
# Works offline once the Python packages are installed (no model download needed).
#
#   bash scripts/demo.sh            # the feature extraction demo (about a minute)
#   bash scripts/demo.sh recipes    # synthetic Aff-Wild2 set -> both ABAW recipes, one command
#                                   # each (about 2 minutes on an idle 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
emofeat=.venv/bin/emofeat

if [ "${1:-}" = "recipes" ]; then
  data=demo/affwild2
  # an Aff-Wild2-shaped tree whose labels follow what the faces and voices show
  [ -d "$data" ] || $emofeat datasets synth "$data" --videos 16
  $emofeat datasets check "$data"
  # one command per track: plan, extract what is missing (face expression net on the crops,
  # eGeMAPS statistics of the voices) into demo/runs/features/, train, score, submit
  for recipe in abaw_va abaw_expr; do
    $emofeat recipe run "$recipe" --data "$data" -o demo/runs
  done
  echo
  echo "Runs are in $(pwd)/demo/runs/: metrics.json, plots/, predictions/, submission/."
  exit 0
fi

$emofeat sample demo/inputs
$emofeat extract --plugin egemaps --plugin functionals demo/inputs -o demo/features.h5
$emofeat inspect demo/features.h5
echo
echo "Features are in $(pwd)/demo/features.h5 (items in demo/features.h5.d/)."
echo "Read them: .venv/bin/python -c \"import emofeat; print(emofeat.open_store('demo/features.h5').to_frame('egemaps', 'lld'))\""
