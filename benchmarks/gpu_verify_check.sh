#!/usr/bin/env bash
# Device checks of the verifier's CUDA path (no install: PYTHONPATH=src). Usage: bash benchmarks/gpu_verify_check.sh OUT
set -uo pipefail
OUT=${1:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 LYAPCERT_CACHE_DIR=/tmp/lyapcert-cache
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -m pytest -q -p no:cacheprovider tests/test_verify.py -k "cuda or vanderpol_quadratic or pendulum_energy or network" 2>&1 | tail -4
python3 benchmarks/verify_speed.py --device cuda --out "$OUT" 2>&1 | tee "$OUT/verify_cuda.log"
python3 benchmarks/verify_speed.py --device cpu --out "$OUT/cpu16" 2>&1 | tee "$OUT/verify_cpu16.log"
