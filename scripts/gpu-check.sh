#!/usr/bin/env bash
# The GPU check in one command (docs/gpu.md): the CUDA tests, the EOF step speed (eager,
# compiled, naive), batched throughput and as much of the EOF paper run as fits, at most
# 6 minutes on one H100 / H200. Writes OUTDIR/gpu-check.json and OUTDIR/gpu-check.log and
# prints a short table last.
#
#   scripts/gpu-check.sh OUTDIR [--device cuda|cpu] [--small] [--budget SECONDS]
#
# Needs PyTorch, h5py, xarray, scipy, pytest, pytest-benchmark, tqdm and matplotlib (no
# DOLFINx) and installs nothing: it runs benchmarks/gpu_check.py from this source tree with
# PYTHONPATH set, with $PYTHON, else .venv/bin/python when there is one, else python3.
# `--device cpu --small` checks the script itself on a CPU (1-2 minutes).
set -euo pipefail

if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    echo "usage: $0 OUTDIR [--device cuda|cpu] [--small] [--budget SECONDS]" >&2
    exit 2
fi
mkdir -p "$1"
out="$(cd "$1" && pwd)"
shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$root/.venv/bin/python" ]; then
        python="$root/.venv/bin/python"
    else
        python="$(command -v python3 || command -v python)"
    fi
fi
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" benchmarks/gpu_check.py "$out" "$@"
