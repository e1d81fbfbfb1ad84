"""EGEAN through `distrec run` on the shared local Ray cluster: Ray Train workers, data generated
by the recipe's prepare hook, entire-space metrics in metrics.jsonl."""

import json

import pytest

from distrec.cli import main


@pytest.mark.ray
def test_distrec_run_trains_egean_on_ray(tmp_path, ray_cluster, capsys):
    data = tmp_path / "data"
    assert main([
        "run", "configs/egean/smoke.yaml", f"run.output_dir={tmp_path / 'runs'}",
        f"data.train={data / 'train'}", f"data.valid={data / 'valid'}", f"data.schema={data / 'schema.yaml'}",
        "method.ground_truth.rows=2000", "method.ground_truth.valid_rows=1000", "trainer.epochs=1",
        "data.batch_size=128", "metrics.tensorboard=false",
    ]) == 0
    printed = capsys.readouterr().out
    assert "done: step 8" in printed and "ctcvr_auc" in printed  # `distrec run` ends with its summary
    run_dir = tmp_path / "runs" / "egean-smoke"
    final = json.loads((run_dir / "summary.json").read_text())["final"]
    assert final["step"] == 8  # 2000 rows / (128 x 2 workers), last batch padded
    assert final["epoch_rows"] == 2000 and final["ctr_num_rows"] == 1000
    assert final["ctr_auc"] > 0.7
    assert -0.5 < final["cvr_bias_exposure"] < 0.5 and 0.5 < final["cvr_exposure_auc"] <= 1.0
    assert (data / "schema.yaml").is_file() and (run_dir / "checkpoints" / "latest").is_file()
