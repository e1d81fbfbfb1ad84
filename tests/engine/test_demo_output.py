"""What `make demo` shows a newcomer: distrec's progress, a closing summary, and no library chatter.

`distrec run` runs as its own process here, as `make demo` runs it, and starts its own embedded Ray
(the shared test cluster may be up beside it: a second local Ray on the machine must not make
Ray's helpers complain either)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINE_BUDGET = 40  # the run below prints 11; `make demo` printed ~100 before the clean-up
NOISE = ("Successfully loaded", "PlacementGroupCleaner", "FutureWarning", "Traceback",
         "Started a local Ray instance", "Token authentication", "core_worker.cc", "is_fx_tracing")


def distrec_command() -> list[str]:
    script = Path(sys.executable).parent / "distrec"  # the console script `make demo` calls
    return [str(script)] if script.exists() else [sys.executable, "-m", "distrec.cli"]


@pytest.mark.slow
def test_smoke_run_prints_progress_and_summary_only(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # an embedded Ray, as make demo
    proc = subprocess.run(
        [*distrec_command(), "run", "configs/ctr/smoke.yaml", f"run.output_dir={runs}",
         f"data.train={data / 'train'}", f"data.valid={data / 'valid'}", f"data.test={data / 'test'}",
         f"data.schema={data / 'train' / 'schema.yaml'}", "data.synth.rows=4000",
         "data.synth.valid_rows=1000", "trainer.epochs=1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    lines = output.splitlines()
    for noise in NOISE:
        assert noise not in output, f"{noise!r} in the output:\n{output}"
    assert len(lines) <= LINE_BUDGET, f"{len(lines)} lines:\n{output}"

    run_dir = runs / "ctr-smoke"
    assert any("distrec: epoch 0 step " in line and "samples/s | ETA" in line for line in lines), output
    summary = proc.stdout.splitlines()[-5:]  # the block the driver ends with, on stdout
    assert summary[0].startswith("done: ") and "1000 eval rows" in summary[0], output
    assert summary[1].split()[:2] == ["metrics", "auc"], output
    assert f"run dir      {run_dir}" in summary[2]
    assert summary[3].endswith(str(run_dir / "curves.png")) and (run_dir / "curves.png").exists()
    assert summary[4].endswith(f"tensorboard --logdir {run_dir / 'tensorboard'}")
