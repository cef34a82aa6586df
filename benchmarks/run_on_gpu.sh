#!/usr/bin/env bash
# Run epinn's default test suite and the benchmarks on a machine with a CUDA GPU.
#
# Assumes a Python environment that already has jax with CUDA support, flax, optax, diffrax,
# optimistix, numpyro, matplotlib, tqdm, scipy, pytest (+ pytest-xdist, pytest-timeout) and
# a CUDA build of PyTorch; epinn is taken from this checkout (PYTHONPATH), not installed.
# Everything is written to OUT (default: results/gpu), the tables are printed.
#
#   bash benchmarks/run_on_gpu.sh [OUT] [TEST_BUDGET_S]
#
# The test processes share the GPU, so JAX's preallocation of 75% of GPU memory per process
# is switched off. Each stage has a time budget, so a slow stage cannot eat the others.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-results/gpu}
budget=${2:-300}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export XLA_PYTHON_CLIENT_PREALLOCATE=false

{
  date -u
  nvidia-smi -L
  nproc
  python3 - <<'EOF'
import importlib
for name in ("jax", "jaxlib", "flax", "optax", "diffrax", "equinox", "optimistix", "numpyro",
             "scipy", "numpy", "torch"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as e:  # report, do not stop
        print(name, "unavailable:", e)
import jax
print("jax devices:", jax.devices())
EOF
} 2>&1 | tee "$out/env.txt"

# Failures and durations are written as they happen (a run stopped by its budget prints no
# summary). pytest-benchmark, if installed, refuses to run beside xdist: switched off.
echo "== tests (budget ${budget}s)"
EPINN_REPORT_DIR=$out PYTHONPATH=$PYTHONPATH:$PWD/benchmarks timeout "$budget" \
  python3 -m pytest -q -p no:cacheprovider -p no:benchmark -p pytest_report_to_files \
  -n 16 --timeout 150 -rfE 2>&1 | tee "$out/tests.log" | tail -40
echo "tests: exit status ${PIPESTATUS[0]} (124 = budget)"

bench() {  # bench BUDGET_S SCRIPT ARGS...
  local t=$1; shift
  echo "== $* (budget ${t}s)"
  timeout "$t" python3 "$@" 2>&1 | grep -v "^\s*$"
  echo "exit status ${PIPESTATUS[0]}"
}
{
  # scipy on one BLAS/OpenMP thread: with 16 it spent 4.5 s of CPU in 0.28 s of wall time
  # on the stacked system (2026-11-27, H100 machine), 3x slower than on 2 cores.
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    bench 80 benchmarks/bench_sir_ensemble.py --repeats 5 --scipy-repeats 3 --json "$out/sir.json"
  bench 45 benchmarks/bench_sir_ensemble.py --chunk-size 1024 --loop-subset 50 --repeats 5 \
    --scipy-repeats 1
  bench 70 benchmarks/bench_rnn.py --repeats 2 --torch-device cuda --json "$out/rnn.json"
  bench 45 benchmarks/bench_mlp.py --repeats 2 --torch-device cuda --json "$out/mlp.json"
  bench 70 benchmarks/bench_fit.py --method vmap --scipy-subset 10 --repeats 5 \
    --json "$out/fit.json"
} 2>&1 | tee "$out/bench.log"
