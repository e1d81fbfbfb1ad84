#!/usr/bin/env bash
# Runs the test suite (called by `make test`, which CI runs through .ci/run).
# Builds DeepSpeed's CPU shared-memory comm op once into a cache we control, so no test pays
# the ~30 s JIT build, then runs pytest. Every server the tests start binds 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions}"
export DS_ACCELERATOR=cpu GLOO_SOCKET_IFNAME=lo MASTER_ADDR=127.0.0.1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export RAY_USAGE_STATS_ENABLED=0 PYTHONWARNINGS="ignore::DeprecationWarning"
python - <<'PY'
import time
from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder
t = time.time()
ShareMemCommBuilder().load(verbose=False)
print(f"DeepSpeed CPU comm op ready ({time.time() - t:.0f} s)")
PY
# Two pytest processes: the multinode tests start their own `ray start` cluster, which must not
# share a process with the embedded test cluster (see tests/test_cluster_jobs.py).
if [[ $# -gt 0 ]]; then
  exec python -m pytest -q -p no:cacheprovider "$@"
fi
status=0
python -m pytest -q -p no:cacheprovider -m "not multinode" || status=$?
python -m pytest -q -p no:cacheprovider -m multinode || status=$?
exit $status
