#!/usr/bin/env bash
# Scaling benchmark on a GPU machine: ratings/s of the regressor and GAN
# epochs on 1, 2, 4 and 8 of its GPUs (counts it lacks are skipped), in
# under 5 minutes. Prints a table and JSON; writes the JSON to OUTPUT.
#   scripts/gpu_benchmark.sh [OUTPUT]        (default scale_gpu.json)
# PYTHON selects the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
output=${1:-scale_gpu.json}
python=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$python" - <<'CHECK'
import jax
if jax.default_backend() != "gpu":
    raise SystemExit(f"no GPU found; JAX sees {jax.devices()}")
print(f"{jax.device_count()} x {jax.devices()[0].device_kind}")
CHECK

# About 2M ratings: large batches keep the GPUs busy; the timeout keeps the
# whole script inside its 5 minutes even on a slow start.
timeout 270 "$python" benchmarks/scale_benchmark.py \
  --num-users 50000 --num-items 20000 --num-ratings 2000000 \
  --regressor-batch 8192 --gan-batch 2048 --epochs 3 \
  --output "$output"
