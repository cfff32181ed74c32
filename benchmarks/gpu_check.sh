#!/usr/bin/env bash
# The device checks of the CUDA path, run on a machine with a GPU (no install: PYTHONPATH=src).
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]
set -uo pipefail
OUT=${1:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 LYAPCERT_CACHE_DIR=/tmp/lyapcert-cache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 -m pytest -q -p no:cacheprovider tests/test_simulate.py tests/test_roa.py tests/test_registry.py \
  -k "cuda or vanderpol or registry" 2>&1 | tee "$OUT/gpu_tests.log" | tail -5
python3 benchmarks/roa_speed.py --device cuda --repeats 2 --out "$OUT" 2>&1 | tee "$OUT/gpu_bench.log"
python3 benchmarks/roa_speed.py --device cpu --repeats 1 --systems vanderpol power_system --out "$OUT/cpu16" 2>&1 | tee -a "$OUT/gpu_bench.log"
