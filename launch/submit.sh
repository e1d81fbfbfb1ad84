#!/usr/bin/env bash
# Submit a distrec config to a running Ray cluster through its Jobs API and follow the logs.
set -euo pipefail
# shellcheck source=launch/_config_arg.sh
. "$(dirname "$0")/_config_arg.sh"

usage() {
  cat <<'USAGE'
usage: launch/submit.sh CONFIG [key=value ...] [--address http://HEAD:8265] [--no-follow]

Runs `distrec submit CONFIG [key=value ...] --address ADDRESS --follow`: this checkout is
uploaded as the job's working directory, the job runs `distrec run CONFIG ...` on the cluster,
and the logs stream here until it ends (exit status 0 only if the job succeeded).
ADDRESS defaults to $RAY_ADDRESS, else http://127.0.0.1:8265 (e.g. `ray dashboard
cluster/aws-gpu.yaml` or `kubectl -n distrec port-forward svc/distrec-head-svc 8265:8265`).
Credentials stay on the cluster (instance roles, IRSA, Kubernetes secrets): none are sent.

Afterwards:  distrec status JOB_ID --address ADDRESS
             distrec logs JOB_ID --follow --address ADDRESS
             distrec stop JOB_ID --address ADDRESS

examples:
  launch/submit.sh configs/ctr/cluster-1b.yaml --address http://127.0.0.1:8265
  launch/submit.sh configs/ctr/cluster-1b.yaml trainer.max_steps=200 run.name=ctr-1b-probe
USAGE
}

config=""
address="${RAY_ADDRESS:-http://127.0.0.1:8265}"
follow=(--follow)
overrides=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --address) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; address="$2"; shift 2 ;;
    --address=*) address="${1#--address=}"; shift ;;
    --no-follow) follow=(); shift ;;
    -*) echo "launch/submit.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) positional "launch/submit.sh" "$1"; shift ;;
  esac
done
[[ -n "$config" ]] || { usage >&2; exit 2; }

config_in_checkout "launch/submit.sh"
if ! command -v distrec >/dev/null 2>&1 && [[ -f .venv/bin/activate ]]; then
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi

# Ray Train otherwise moves each worker into a scratch directory, where the config's relative
# paths (data.schema) no longer resolve.
exec distrec submit "$config" ${overrides[@]+"${overrides[@]}"} --address "$address" \
  --env RAY_CHDIR_TO_TRIAL_DIR=0 ${follow[@]+"${follow[@]}"}
