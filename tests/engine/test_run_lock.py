"""One writer per run directory: a second run on a held directory is refused naming the holder; a
stale lock (its process gone, or its S3 lease run out) is taken over with a warning."""

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest

from distrec.cli import main
from distrec.errors import RunLockError
from distrec.train.run_lock import LOCK_FILE, hold_run_lock

REPO = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time; from distrec.train.run_lock import hold_run_lock\n"
        "with hold_run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)\n")


def test_second_process_is_refused_then_takes_over_a_dead_holders_lock(tmp_path, caplog):
    run_dir = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, run_dir], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockError) as info, hold_run_lock(run_dir):
            pass
        assert str(info.value).startswith(
            f"run directory {run_dir} is in use by another run: pid {holder.pid} on host {socket.gethostname()}, "
            f"started ")
        assert f"(lock {run_dir}/{LOCK_FILE}; that process is running)" in str(info.value)
    finally:
        holder.kill()
        holder.wait()

    with caplog.at_level(logging.WARNING, logger="distrec"), hold_run_lock(run_dir):
        record = json.loads((tmp_path / "run" / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid()
    assert f"taking over the stale run lock {run_dir}/{LOCK_FILE}: pid {holder.pid}" in caplog.text
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # released at the end of the block
    with hold_run_lock(run_dir):  # and free for the next run
        pass


def test_lock_from_another_host_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_FILE).write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": 0,
                                                 "started_utc": "2026-01-01 00:00:00 UTC"}))
    refused = pytest.raises(RunLockError, match="pid 1 on host elsewhere, started 2026-01-01 00:00:00 UTC .*"
                                                "held from another host")
    with refused, hold_run_lock(str(run_dir)):
        pass
    assert (run_dir / LOCK_FILE).exists()  # never removed by the run it refused


def test_distrec_run_is_refused_before_writing_to_a_held_run_dir(tmp_path, capsys):
    data = tmp_path / "data"
    run_dir = tmp_path / "runs" / "ctr-smoke"
    run_dir.mkdir(parents=True)
    (run_dir / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(), "started": 0,
                                                 "started_utc": "2026-01-01 00:00:00 UTC"}))
    code = main(["run", "configs/ctr/smoke.yaml", f"run.output_dir={tmp_path / 'runs'}",
                 f"data.train={data / 'train'}", f"data.schema={data / 'train' / 'schema.yaml'}", "data.valid=null",
                 "data.test=null", "data.synth.rows=500", "data.synth.rows_per_file=500"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"error: run directory {run_dir} is in use by another run: pid {os.getppid()}" in err
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]  # no config.yaml, no checkpoints


def test_s3_lock_is_refused_while_renewed_and_taken_over_once_its_lease_ran_out(s3_server, s3_bucket, caplog):
    run_dir = f"{s3_bucket}/runs/r"
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": s3_server})
    with hold_run_lock(run_dir, s3_server, lease_s=1.5):
        time.sleep(2.5)  # past its lease: renewals keep it held
        refused = pytest.raises(RunLockError, match=rf"^run directory {run_dir} is in use by another run: "
                                                    rf"pid {os.getpid()}.*renewed \d+ s ago, lease 2 s")
        with refused, hold_run_lock(run_dir, s3_server):
            pass
    assert not fs.exists(f"{run_dir}/{LOCK_FILE}")

    # a holder that died: its lock is never renewed
    fs.pipe_file(f"{run_dir}/{LOCK_FILE}", json.dumps({"host": "gone", "pid": 7, "started": 0, "lease_s": 1,
                                                       "started_utc": "2026-01-01 00:00:00 UTC"}).encode())
    time.sleep(2.1)
    with caplog.at_level(logging.WARNING, logger="distrec"), hold_run_lock(run_dir, s3_server):
        assert json.loads(fs.cat_file(f"{run_dir}/{LOCK_FILE}"))["pid"] == os.getpid()
    assert f"taking over the stale run lock {run_dir}/{LOCK_FILE}: pid 7 on host gone" in caplog.text


def test_unreachable_s3_endpoint_is_one_error_naming_it(monkeypatch):
    from distrec.errors import DataError

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    start = time.monotonic()
    refused = pytest.raises(DataError, match=rf"^cannot write s3://nowhere/runs/r/{LOCK_FILE} on S3 endpoint {endpoint}: ")
    with refused, hold_run_lock("s3://nowhere/runs/r", endpoint):
        pass
    assert time.monotonic() - start < 30
