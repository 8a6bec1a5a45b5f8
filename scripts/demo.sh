#!/usr/bin/env bash
# Set up, make sample inputs, extract eGeMAPS + sliding functionals, show the store.
# Works offline once the Python packages are installed (no model download needed).
#
#   bash scripts/demo.sh            # the feature extraction demo (about a minute)
#   bash scripts/demo.sh recipes    # synthetic Aff-Wild2 set -> extract -> both ABAW recipes
#                                   # (about 3 minutes on an idle 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
emofeat=.venv/bin/emofeat

if [ "${1:-}" = "recipes" ]; then
  data=demo/affwild2
  feats=demo/affwild2-feats.h5
  # an Aff-Wild2-shaped tree whose labels follow what the faces and voices show
  $emofeat datasets synth "$data" --videos 24 --duration 12
  # face expression net (MIT, fetched from npm on first use) on the cropped_aligned folders
  $emofeat extract --plugin face_expr "$data"/cropped_aligned/* -o "$feats"
  # eGeMAPS LLDs of the videos' audio, and their 1 s sliding-window mean and std
  $emofeat extract --plugin egemaps --set egemaps.functionals=false "$data/videos" -o "$feats"
  $emofeat extract --plugin functionals --set functionals.source=egemaps.lld \
    --set functionals.win=1.0 --set functionals.hop=0.2 --set functionals.stats=mean,std \
    "$data/videos" -o "$feats"
  for recipe in abaw_va abaw_expr; do
    $emofeat recipe run "$recipe" --data "$data" --features "$feats" -o demo/runs \
      --config quick --set inputs.audio=functionals.egemaps.lld
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
