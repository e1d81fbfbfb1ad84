#!/usr/bin/env bash
# The benchmark suite on a CUDA machine: installs the CUDA builds of the pinned stack
# (make ACCEL=gpu install), runs every benchmark with --device cuda (trainer.use_gpu=true, NCCL
# between GPU workers) and writes benchmarks/results/<name>-gpu.json next to the CPU results.
#   benchmarks/gpu_suite.sh            # all visible GPUs (1 or 2 workers are compared)
# Commit the -gpu.json files it writes: they replace the ASSUMED GPU factor of scaling.json.
set -euo pipefail
cd "$(dirname "$0")/.."
make ACCEL=gpu install
. .venv/bin/activate
export GLOO_SOCKET_IFNAME=lo MASTER_ADDR=127.0.0.1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0
export PYTHONWARNINGS="ignore::DeprecationWarning,ignore::FutureWarning"
gpus=$(python -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [ "$gpus" -lt 1 ]; then
  echo "gpu_suite.sh: no CUDA device visible to torch" >&2
  exit 1
fi
workers="1"
[ "$gpus" -ge 2 ] && workers="1 2"   # one GPU per worker process
echo "=== $gpus GPU(s): $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); workers: $workers"
python benchmarks/engine_overhead.py --device cuda --procs $workers "$@"
python benchmarks/embedding_path.py  --device cuda "$@"
python benchmarks/data_path.py       --device cuda "$@"
python benchmarks/gpu_factor.py      --device cuda
python benchmarks/scaling.py         --device cuda --workers $workers "$@"
python benchmarks/memory.py          --device cuda --workers "$([ "$gpus" -ge 2 ] && echo 2 || echo 1)" "$@"
echo "=== done: benchmarks/results/*-gpu.json"
