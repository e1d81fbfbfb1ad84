#!/usr/bin/env bash
# Runs every benchmark at its default size on this machine and writes benchmarks/results/*.json
# (plus scaling.md); its run time is not recorded. Pass extra args to every script, e.g.
#   benchmarks/run_all.sh --rounds 3
# GPU machines: benchmarks/gpu_suite.sh instead.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${VIRTUAL_ENV:-}" ] || . .venv/bin/activate
export GLOO_SOCKET_IFNAME=lo MASTER_ADDR=127.0.0.1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0
export PYTHONWARNINGS="ignore::DeprecationWarning,ignore::FutureWarning"
for bench in engine_overhead embedding_path data_path scaling memory conure_bytes_per_task import_path; do
  echo "=== $bench ($(date +%T))"
  python "benchmarks/$bench.py" "$@"
done
echo "=== done ($(date +%T)): results in benchmarks/results/"
