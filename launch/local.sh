#!/usr/bin/env bash
# Run a distrec config on an embedded single-node Ray bound to 127.0.0.1 (laptop, one GPU box).
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: launch/local.sh CONFIG [key=value ...]

Trains CONFIG (e.g. configs/ctr/smoke.yaml) with `distrec run` on a Ray started for this run
on 127.0.0.1, whatever trainer.address the config names. Paths inside configs are relative
to the repository root, so the run starts there; the run directory is
<run.output_dir>/<run.name> (runs/<name> by default).

examples:
  launch/local.sh configs/ctr/smoke.yaml
  launch/local.sh configs/ctr/smoke.yaml trainer.num_workers=2 data.batch_size=512
  launch/local.sh configs/ctr/criteo.yaml trainer.use_gpu=true trainer.num_workers=8
USAGE
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  ""|-*) usage >&2; exit 2 ;;
esac
config="$1"; shift

root="$(cd "$(dirname "$0")/.." && pwd)"
# A config path given relative to the caller's directory still works after the cd below.
if [[ -f "$config" && "$config" != /* ]]; then
  config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"
fi
cd "$root"
if [[ ! -f "$config" ]]; then
  echo "launch/local.sh: config file not found: $config" >&2
  exit 2
fi
if ! command -v distrec >/dev/null 2>&1; then
  if [[ -f .venv/bin/activate ]]; then
    # shellcheck disable=SC1091
    . .venv/bin/activate
  else
    echo "launch/local.sh: distrec is not installed; run 'make install' first" >&2
    exit 2
  fi
fi

# Everything on loopback (see ../shared/docs/stack.md, "Ray on one machine").
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-lo}"
export MASTER_ADDR=127.0.0.1 RAY_USAGE_STATS_ENABLED="${RAY_USAGE_STATS_ENABLED:-0}"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$root/.cache/torch_extensions}"
# Ray Train otherwise moves each worker into a scratch directory, where the config's relative
# paths (data.schema, data.train) no longer resolve.
export RAY_CHDIR_TO_TRIAL_DIR="${RAY_CHDIR_TO_TRIAL_DIR:-0}"
unset RAY_ADDRESS   # never join another cluster from here

exec distrec run "$config" trainer.address=null "$@"
