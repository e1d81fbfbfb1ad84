"""``distrec submit / status / logs / stop``: run configs on a Ray cluster through the Jobs API.

The job runs ``distrec run CONFIG k=v ...`` on the cluster with this checkout as its working
directory. The cluster's image carries the pinned stack (Dockerfile); credentials come from the
cluster's own environment (instance roles, Kubernetes secrets), never from the submitter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time

from distrec.errors import DistrecError

WORKING_DIR_EXCLUDES = [".venv", ".git", "runs", ".cache", "benchmarks/results", "**/__pycache__",
                        "*.egg-info"]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _client(address: str | None):
    from ray.job_submission import JobSubmissionClient

    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise DistrecError("no Ray cluster given: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # noqa: BLE001 - connection errors come in many types
        raise DistrecError(f"cannot reach the Ray Jobs API at {address}: {exc}") from None


def entrypoint(config: str, overrides: list[str]) -> str:
    return " ".join(["distrec", "run", shlex.quote(config), *(shlex.quote(o) for o in overrides)])


def runtime_env(working_dir: str, env: list[str], pip_requirements: str | None) -> dict:
    env_vars = {}
    for item in env:
        key, eq, value = item.partition("=")
        if not eq:
            raise DistrecError(f"--env expects KEY=VALUE, got {item!r}")
        env_vars[key] = value
    out = {"working_dir": working_dir, "excludes": WORKING_DIR_EXCLUDES, "env_vars": env_vars}
    if pip_requirements:
        with open(pip_requirements) as fh:
            out["pip"] = [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    return out


def cmd_submit(args) -> int:
    from distrec.methods import load_config

    load_config(args.config, args.overrides)  # fail here, not on the cluster, on a bad config
    client = _client(args.address)
    job_id = client.submit_job(
        entrypoint=entrypoint(args.config, args.overrides),
        runtime_env=runtime_env(args.working_dir, args.env, args.pip_requirements),
        submission_id=args.job_id,
    )
    print(job_id)
    sys.stdout.flush()
    return follow(client, job_id, args.timeout_s) if args.follow else 0


def follow(client, job_id: str, timeout_s: float) -> int:
    """Stream the job's logs until it ends; exit code 0 only if it succeeded."""

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="")

    try:
        asyncio.run(asyncio.wait_for(tail(), timeout=timeout_s))
    except asyncio.TimeoutError:
        print(f"\nstopped following {job_id} after {timeout_s:.0f} s; it is still running", file=sys.stderr)
        return 3
    return report_status(client, job_id, wait_s=30)


def report_status(client, job_id: str, wait_s: float = 0) -> int:
    deadline = time.monotonic() + wait_s
    info = client.get_job_info(job_id)
    while str(info.status) not in TERMINAL and time.monotonic() < deadline:
        time.sleep(1)
        info = client.get_job_info(job_id)
    status = str(info.status)
    print(f"job {job_id}: {status}" + (f" — {info.message}" if info.message else ""))
    if status == "FAILED":
        return 1
    return 0


def cmd_status(args) -> int:
    return report_status(_client(args.address), args.job_id)


def cmd_logs(args) -> int:
    client = _client(args.address)
    if args.follow:
        return follow(client, args.job_id, args.timeout_s)
    print(client.get_job_logs(args.job_id), end="")
    return 0


def cmd_stop(args) -> int:
    client = _client(args.address)
    stopped = client.stop_job(args.job_id)
    print(f"job {args.job_id}: {'stop requested' if stopped else 'already finished'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    def with_address(p):
        p.add_argument("--address", default=None, help="Ray dashboard, e.g. http://HEAD:8265 (or RAY_ADDRESS)")
        return p

    submit = with_address(subparsers.add_parser("submit", help="run a config on a Ray cluster (Jobs API)"))
    submit.add_argument("config")
    submit.add_argument("overrides", nargs="*", help="key=value overrides")
    submit.add_argument("--follow", action="store_true", help="stream logs until the job ends")
    submit.add_argument("--working-dir", default=".", help="uploaded as the job's working directory")
    submit.add_argument("--env", action="append", default=[], help="KEY=VALUE for the job (not secrets)")
    submit.add_argument("--pip-requirements", default=None, help="pinned extra packages for the job")
    submit.add_argument("--job-id", default=None)
    submit.add_argument("--timeout-s", type=float, default=24 * 3600, help="how long --follow waits")
    submit.set_defaults(func=cmd_submit)

    status = with_address(subparsers.add_parser("status", help="a submitted job's status"))
    status.add_argument("job_id")
    status.set_defaults(func=cmd_status)

    logs = with_address(subparsers.add_parser("logs", help="a submitted job's logs"))
    logs.add_argument("job_id")
    logs.add_argument("--follow", action="store_true")
    logs.add_argument("--timeout-s", type=float, default=24 * 3600)
    logs.set_defaults(func=cmd_logs)

    stop = with_address(subparsers.add_parser("stop", help="stop a submitted job"))
    stop.add_argument("job_id")
    stop.set_defaults(func=cmd_stop)
