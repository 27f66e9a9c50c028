#!/usr/bin/env bash
# The GPU measurements, in one prepared run (see benchmarks/README.md, "GPU: the prepared
# check"). From the repository root of a machine with a CUDA GPU:
#
#     bash benchmarks/gpu_wheels.sh                  # here: the wheels a bare machine lacks
#     bash benchmarks/gpu_check.sh                   # there, with .whl beside the code
#
# Steps (STEPS, in this order by default): env, tests (the gpu-marked tests), ridge
# (5,000 x 1,024 -> 20,000 targets, 10 alphas: neuroalign on the GPU against himalaya's
# torch_cuda backend, each in a fresh process), nsd (30,000 x 1,024 -> 32,768 targets, the
# same two), wholebrain (a simulated whole-brain fsaverage subject written as a store,
# 30,000 trials x 327,684 vertices, 39 GB on disk, fitted from disk on the GPU). Each step
# gets what is left of BUDGET seconds (default 570) at most; its output goes to $OUT
# (default ./gpu-check) as soon as it ends, so a step cut short leaves the others' results.
#
# A dry run on the CPU at small sizes, with this checkout's environment, checks this script:
#     DEVICE=cpu HIMALAYA=torch SMALL=1 WHEELS=0 PY=.venv/bin/python bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
HIMALAYA=${HIMALAYA:-torch_cuda}
STEPS=${STEPS:-env tests ridge nsd wholebrain}
BUDGET=${BUDGET:-570}
ROOT=${ROOT:-/tmp/neuroalign-gpu-check}
export PYTHONUNBUFFERED=1
deadline=$((SECONDS + BUDGET))
if [ "${WHEELS:-1}" = 1 ] && [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/neuroalign-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/neuroalign-site:$PWD
else
    export PYTHONPATH=$PWD
fi
if [ -n "${SMALL:-}" ]; then
    RIDGE="--n 600 --p 64 --t 500"; NSD="--n 3000 --p 128 --t 2000"
    WB="--trials 3000 --images 1000 --vertices 3000 --features 128"
    export NEUROALIGN_GPU_TESTS_DEVICE=$DEVICE
else
    RIDGE="--n 5000 --p 1024 --t 20000"; NSD="--n 30000 --p 1024 --t 32768"; WB=""
fi

step() {  # step NAME CAP COMMAND...: run with at most CAP seconds, or what is left
    local name=$1 cap=$2; shift 2
    local left=$((deadline - SECONDS))
    [ "$left" -lt "$cap" ] && cap=$left
    if [ "$cap" -le 5 ]; then
        echo "$name: not run (no time left)" | tee -a "$OUT/summary.md"; return
    fi
    local t0=$SECONDS
    timeout -k 10 "$cap" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - t0)) s" | tee -a "$OUT/summary.md"
    tail -n 25 "$OUT/$name.log" >>"$OUT/summary.md"
    echo >>"$OUT/summary.md"
}

: >"$OUT/summary.md"
for s in $STEPS; do
    case $s in
    env) step env 60 bash -c "nvidia-smi || true; $PY -c 'import sys, numpy, torch, xarray, zarr, dask, himalaya; \
print(sys.version); print(\"numpy\", numpy.__version__, \"torch\", torch.__version__, \"xarray\", xarray.__version__, \
\"zarr\", zarr.__version__, \"dask\", dask.__version__, \"himalaya\", himalaya.__version__); \
print(\"cuda\", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"-\")'; \
nproc; free -g; df -h /tmp" ;;
    tests) step tests 180 "$PY" -m pytest -p no:cacheprovider -n 0 -m gpu -q -o addopts="" \
        tests/compare/test_compare_gpu.py tests/encoders/test_encoders_gpu.py tests/features/test_extract_gpu.py ;;
    ridge) step ridge 150 "$PY" benchmarks/bench_ridge.py $RIDGE --alphas 10 --no-sweep \
        --methods neuroalign,himalaya --device "$DEVICE" --himalaya-backend "$HIMALAYA" \
        --threads "$(nproc)" --json "$OUT/ridge.json" ;;
    nsd) step nsd 150 "$PY" benchmarks/bench_ridge.py $NSD --alphas 10 --no-sweep \
        --methods neuroalign,himalaya --device "$DEVICE" --himalaya-backend "$HIMALAYA" \
        --threads "$(nproc)" --json "$OUT/nsd.json" ;;
    wholebrain) step wholebrain 600 env OMP_NUM_THREADS="$(nproc)" "$PY" benchmarks/bench_wholebrain.py \
        --root "$ROOT" $WB --no-cells --device "$DEVICE" --json "$OUT/wholebrain.json" ;;
    *) echo "unknown step $s" | tee -a "$OUT/summary.md" ;;
    esac
done
echo "done in $SECONDS s; results in $OUT" | tee -a "$OUT/summary.md"
