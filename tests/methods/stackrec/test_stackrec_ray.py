"""A StackRec stage on Ray Train workers (the shared local cluster) survives a killed worker: Ray
restarts the group from the stage's last evaluation checkpoint and the loop goes on from there."""

import json

import pytest
from test_stackrec_smoke import smoke_config

from distrec.methods import prepare_data
from distrec.methods.stackrec.scenario import ray_launcher, run_variant


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_stage_on_ray_restarts_from_its_last_evaluation_after_a_worker_dies(tmp_path, ray_cluster):
    cfg = smoke_config(tmp_path, tmp_path / "data", "method.stages=[{blocks: 2, max_steps: 20}]",
                       "trainer.early_stopping.patience=10", "trainer.max_failures=1", "trainer.fail_at_step=12")
    prepare_data(cfg)
    result = run_variant(cfg, "adjacent", ray_launcher)
    stage_dir = tmp_path / "runs" / "stackrec-smoke" / "adjacent" / "stage-0"
    assert (stage_dir / ".failed-at-step-12").is_file()  # the drill did kill a worker
    records = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r["step"] for r in records if "mrr@5" in r and "test/mrr@5" not in r]  # not the final line
    # restarted from an evaluation's checkpoint (step 5 or 10: Ray may not have taken in the last
    # report before the worker died), not from the start: step 5 is evaluated once
    assert evaluated.count(5) == 1 and evaluated[-3:] == [10, 15, 20]
    summary = result["stages"][0]["summary"]
    assert summary["steps"] == 20 and [p["step"] for p in summary["curve"]] == [5, 10, 15, 20]
    assert summary["test"]["num_rows"] == 20 and 0.0 <= summary["test"]["mrr@5"] <= 1.0
