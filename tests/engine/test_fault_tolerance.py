"""A worker killed mid-epoch: Ray Train restarts the group, training resumes from the last
checkpoint at the right reader position, and ends where an uninterrupted run ends."""

import json

import pyarrow.parquet as pq
import pytest
from test_run_ray import smoke_args

from distrec.cli import main


def final_record(run_dir):
    return json.loads((run_dir / "summary.json").read_text())["final"]


@pytest.mark.ray
def test_killed_worker_is_replaced_and_run_matches(tmp_path, ray_cluster):
    common = ["trainer.epochs=1", "trainer.checkpoint_every=5", "run.name=drill", "data.shuffle=true"]
    assert main(smoke_args(tmp_path / "calm", *common)) == 0
    assert main(smoke_args(tmp_path / "drill", *common, "trainer.max_failures=1", "trainer.fail_at_step=12")) == 0

    calm = final_record(tmp_path / "calm" / "runs" / "drill")
    drill_dir = tmp_path / "drill" / "runs" / "drill"
    drill = final_record(drill_dir)
    assert (drill_dir / ".failed-at-step-12").exists()  # the failure really happened
    train_rows = sum(pq.read_metadata(f).num_rows for f in (tmp_path / "drill" / "data" / "train").glob("*.parquet"))
    # rows trained in the interrupted epoch: exactly the dataset, none lost or seen twice
    assert drill["epoch_rows"] == calm["epoch_rows"] == train_rows
    assert drill["step"] == calm["step"] and drill["test/num_rows"] == calm["test/num_rows"] > 0
    for key in ("auc", "gauc", "logloss", "test/auc", "test/logloss"):
        assert drill[key] == pytest.approx(calm[key], rel=1e-4, abs=1e-5), key
