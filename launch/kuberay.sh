#!/usr/bin/env bash
# Run a distrec config as a KubeRay RayJob (cluster/kuberay/rayjob.yaml) and follow it.
set -euo pipefail
# shellcheck source=launch/_config_arg.sh
. "$(dirname "$0")/_config_arg.sh"

usage() {
  cat <<'USAGE'
usage: launch/kuberay.sh CONFIG [key=value ...] [-n NAMESPACE] [--name NAME] [--replace]
                         [--no-follow] [--dry-run]

Renders cluster/kuberay/rayjob.yaml with CONFIG (and the overrides) in its entrypoint
`distrec run CONFIG trainer.address=auto ... key=value ...`, applies it with kubectl, then
follows the job: KubeRay starts the RayCluster of the manifest (4 pods x 8 GPUs), its
submitter pod streams the driver's log here, and the exit status is 0 only if the job
SUCCEEDED. The cluster is deleted when the job ends; outputs are in run.output_dir (S3).

CONFIG is a path inside this repository (e.g. configs/ctr/cluster-1b.yaml) and must also be in
the image the manifest names (the Dockerfile copies configs/): rebuild it for a new config.
Credentials come from the pods' service account (IRSA) or the secret distrec-aws, never from here.

options:
  -n, --namespace NS   Kubernetes namespace (default: the manifest's, distrec)
  --name NAME          RayJob name (default: distrec-<recipe>-<config name>)
  --replace            delete a finished or running RayJob of that name first
  --no-follow          apply and return
  --dry-run            print the rendered manifest and stop

Ctrl-C stops following, not the job; stop the job with: kubectl -n NS delete rayjob NAME
DISTREC_KUBERAY_POLL_S sets how often the RayJob's status is read (default 10 s).

examples:
  launch/kuberay.sh configs/ctr/cluster-1b.yaml
  launch/kuberay.sh configs/ctr/cluster-1b.yaml trainer.max_steps=500 run.name=ctr-1b-probe --replace
USAGE
}

config="" namespace="" name="" replace=0 follow=1 dry_run=0
overrides=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -n|--namespace) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; namespace="$2"; shift 2 ;;
    --name) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; name="$2"; shift 2 ;;
    --replace) replace=1; shift ;;
    --no-follow) follow=0; shift ;;
    --dry-run) dry_run=1; shift ;;
    -*) echo "launch/kuberay.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) positional "launch/kuberay.sh" "$1"; shift ;;
  esac
done
[[ -n "$config" ]] || { usage >&2; exit 2; }

config_in_checkout "launch/kuberay.sh"
if [[ -z "$name" ]]; then
  # configs/ctr/cluster-1b.yaml -> distrec-ctr-cluster-1b (a DNS label; KubeRay adds suffixes)
  stem="$(basename "$(dirname "$config")")-$(basename "$config" .yaml)"
  name="$(printf 'distrec-%s' "$stem" | tr '[:upper:]_.' '[:lower:]--' | tr -cd 'a-z0-9-' | cut -c1-40)"
  name="${name%-}"
fi
if [[ -f .venv/bin/activate ]] && ! python3 -c 'import yaml' 2>/dev/null; then
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi

manifest="$(python3 - cluster/kuberay/rayjob.yaml "$config" "$name" "$namespace" \
    ${overrides[@]+"${overrides[@]}"} <<'PY'
import shlex, sys, yaml
template, config, name, namespace, *overrides = sys.argv[1:]
with open(template) as fh:
    job = yaml.safe_load(fh)
tokens = shlex.split(job["spec"]["entrypoint"])
at = tokens.index("run") + 1           # distrec run CONFIG ...
tokens[at] = config
tokens += overrides                     # later overrides win over the template's
job["spec"]["entrypoint"] = " ".join(shlex.quote(t) for t in tokens)
job["metadata"]["name"] = name
if namespace:
    job["metadata"]["namespace"] = namespace
yaml.safe_dump(job, sys.stdout, sort_keys=False, width=1000)
PY
)"
if [[ "$dry_run" == 1 ]]; then
  printf '%s\n' "$manifest"
  exit 0
fi
[[ -n "$namespace" ]] || namespace="$(printf '%s\n' "$manifest" | python3 -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["metadata"]["namespace"])')"
k() { kubectl -n "$namespace" "$@"; }

if k get rayjob "$name" >/dev/null 2>&1; then
  if [[ "$replace" == 1 ]]; then
    k delete rayjob "$name" --wait=true
  else
    echo "launch/kuberay.sh: rayjob/$name already exists in $namespace; pass --replace or --name" >&2
    exit 2
  fi
fi
printf '%s\n' "$manifest" | k apply -f -
echo "rayjob/$name: applied in namespace $namespace (config $config)"
[[ "$follow" == 1 ]] || exit 0

state() { k get rayjob "$name" -o jsonpath='{.status.jobDeploymentStatus}/{.status.jobStatus}' 2>/dev/null || true; }
last="" followed=0
while :; do
  now="$(state)"
  if [[ "$now" != "$last" ]]; then echo "rayjob/$name: ${now:-pending}"; last="$now"; fi
  case "$now" in Complete/*|Failed/*) break ;; esac
  # The submitter Job (named like the RayJob) exists once the cluster is up; its pod streams
  # the driver log until the job ends. `logs -f` fails while that pod is still starting.
  if [[ "$followed" == 0 ]] && k get job "$name" >/dev/null 2>&1 \
      && k logs -f "job/$name" 2>/dev/null; then
    followed=1
  fi
  sleep "${DISTREC_KUBERAY_POLL_S:-10}"
done
job_status="${now#*/}"
echo "rayjob/$name: $job_status"
[[ "$job_status" == SUCCEEDED ]]
