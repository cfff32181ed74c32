#!/bin/bash
# `make demo` on a fresh clone, timed by wall clock, alone or beside a CPU-heavy job (issue 18).
#
#   benchmarks/demo_load.sh REV WORKDIR [load]
#
# Clones this repository at REV into WORKDIR (removed first), gives it an empty true-ROA cache
# (LYAPCERT_CACHE_DIR=WORKDIR/cache, as on a fresh machine) and runs `make demo > demo.log 2>&1`.
# With `load`, a PyTorch process at its own default threads (benchmarks/threads.py's `torch` load)
# runs for the whole demo. Prints one line: the label, the commit, the load, the exit status and
# the wall-clock seconds.
set -u
REV=$1; WORK=$2; LOAD=${3:-none}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
rm -rf "$WORK"
git clone -q "$REPO" "$WORK" && git -C "$WORK" checkout -q "$REV" || exit 2
cd "$WORK" || exit 2
LOADPID=
if [ "$LOAD" = load ]; then
  "$PY" -c "
import torch
a = torch.randn(64, 64, dtype=torch.float64)
x = torch.randn(2000, 64, dtype=torch.float64)
while True:
    torch.tanh(x @ a)
" &
  LOADPID=$!
fi
export LYAPCERT_CACHE_DIR="$WORK/cache"
start=$(date +%s.%N)
make demo > demo.log 2>&1; rc=$?
end=$(date +%s.%N)
[ -n "$LOADPID" ] && kill "$LOADPID"
echo "$(basename "$WORK") rev=$REV load=$LOAD rc=$rc wall=$(echo "$end - $start" | bc) s"
