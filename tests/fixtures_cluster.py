"""A real two-node Ray cluster on this machine: `ray start --head` plus a second `ray start
--address=...` node with its own resources, both on 127.0.0.1, for Jobs API and multi-node tests."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(args, env, log: Path) -> subprocess.Popen:
    ray_bin = str(Path(sys.executable).with_name("ray"))
    return subprocess.Popen([ray_bin, "start", "--block", "--node-ip-address=127.0.0.1",
                             "--disable-usage-stats", *args], env=env, start_new_session=True,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def _alive_nodes(dashboard: str) -> int:
    with urllib.request.urlopen(f"{dashboard}/nodes?view=summary", timeout=5) as resp:
        summary = json.load(resp)["data"]["summary"]
    return sum(1 for node in summary if node["raylet"]["state"] == "ALIVE")


def _wait_for_nodes(dashboard: str, count: int, procs) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {proc.returncode}")
        try:
            if _alive_nodes(dashboard) >= count:
                return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{count} Ray nodes not alive within {START_TIMEOUT_S} s")


def _stop(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def two_node_cluster(tmp_path_factory):
    """Yields the dashboard URL (Jobs API) of a head (2 CPUs) + one worker node (2 CPUs)."""
    tmp = tmp_path_factory.mktemp("ray-cluster")
    ray_tmp = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # unix socket paths stay < 108 bytes
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1: Ray otherwise refuses a second node joining a head on 127.0.0.1
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    gcs_port, dash_port = _free_port(), _free_port()
    dashboard = f"http://127.0.0.1:{dash_port}"
    head = _ray_start([f"--port={gcs_port}", "--head", "--num-cpus=2", "--dashboard-host=127.0.0.1",
                       f"--dashboard-port={dash_port}", "--include-dashboard=true",
                       f"--temp-dir={ray_tmp}", "--resources={\"head\": 1}"], env, tmp / "head.log")
    procs = [head]
    try:
        _wait_for_nodes(dashboard, 1, procs)
        procs.append(_ray_start([f"--address=127.0.0.1:{gcs_port}", "--num-cpus=2",
                                 "--resources={\"second\": 1}"], env, tmp / "node2.log"))
        _wait_for_nodes(dashboard, 2, procs)
        previous = os.environ.get("RAY_AUTH_MODE")
        os.environ["RAY_AUTH_MODE"] = "disabled"  # for this process's Jobs API client
        yield dashboard
        if previous is None:
            os.environ.pop("RAY_AUTH_MODE", None)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(ray_tmp, ignore_errors=True)
