"""A real two-node Ray cluster on this machine: `ray start --head` plus a second `ray start
--address=...` node with its own resources, for Jobs API and multi-node tests.

The nodes live on 127.0.0.2 and 127.0.0.3 (loopback, like 127.0.0.1): Ray replaces exactly
"127.0.0.1" with the machine's outward address once multi-node clusters are enabled, while other
loopback addresses are kept. Every port is chosen free, so the shared embedded test cluster (on
Ray's default agent ports) and these nodes never collide."""

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


HEAD_IP, SECOND_IP = "127.0.0.2", "127.0.0.3"


def _ray_start(ip: str, args, env, log: Path) -> subprocess.Popen:
    ray_bin = str(Path(sys.executable).with_name("ray"))
    ports = [f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}",
             f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
             f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}",
             f"--min-worker-port={20000 if ip == HEAD_IP else 25000}",
             f"--max-worker-port={24999 if ip == HEAD_IP else 29999}"]
    return subprocess.Popen([ray_bin, "start", "--block", f"--node-ip-address={ip}", "--disable-usage-stats",
                             *ports, *args], env=env, start_new_session=True,
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
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1: else Ray refuses a second node (it is set to 0 for the
    # embedded test cluster, which keeps that one on 127.0.0.1)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    gcs_port, dash_port = _free_port(), _free_port()
    dashboard = f"http://{HEAD_IP}:{dash_port}"
    head = _ray_start(HEAD_IP, [f"--port={gcs_port}", "--head", "--num-cpus=2", f"--dashboard-host={HEAD_IP}",
                       f"--dashboard-port={dash_port}", "--include-dashboard=true",
                       f"--ray-client-server-port={_free_port()}",
                       f"--temp-dir={ray_tmp}", "--resources={\"head\": 1}"], env, tmp / "head.log")
    procs = [head]
    try:
        _wait_for_nodes(dashboard, 1, procs)
        procs.append(_ray_start(SECOND_IP, [f"--address={HEAD_IP}:{gcs_port}", "--num-cpus=2",
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
