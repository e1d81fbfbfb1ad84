"""The CTR recipe on real data samples, imported with `distrec data import`, on Ray workers."""

import json

import pyarrow.parquet as pq
import pytest

from distrec.cli import main


def last_metrics(run_dir):
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


@pytest.mark.ray
def test_ml100k_ctr_run(tmp_path, shared_data, ray_cluster):
    data = tmp_path / "ml-100k"
    assert main(["data", "import", "recbole", str(shared_data / "ml-100k"), str(data),
                 "--split", "time"]) == 0
    assert main(["run", "configs/ctr/ml-100k.yaml", f"run.output_dir={tmp_path}",
                 f"data.train={data / 'train'}", f"data.valid={data / 'valid'}",
                 f"data.schema={data / 'schema.yaml'}", "trainer.epochs=2"]) == 0
    metrics = last_metrics(tmp_path / "ctr-ml-100k")
    valid_rows = pq.ParquetDataset(str(data / "valid")).read(columns=["user_id"]).num_rows
    assert metrics["num_rows"] == valid_rows == 10_000  # 10 % of 100k interactions, by time
    assert metrics["auc"] > 0.6 and metrics["gauc"] > 0.5


@pytest.mark.ray
def test_criteo_sample_run(tmp_path, shared_data, ray_cluster):
    data = tmp_path / "criteo"
    assert main(["data", "import", "criteo", str(shared_data / "criteo" / "criteo_sample.txt"), str(data),
                 "--hash-size", "1000"]) == 0
    assert main(["run", "configs/ctr/criteo-smoke.yaml", f"run.output_dir={tmp_path}",
                 f"data.train={data / 'train'}", f"data.valid={data / 'valid'}",
                 f"data.schema={data / 'schema.yaml'}"]) == 0
    metrics = last_metrics(tmp_path / "ctr-criteo-smoke")
    assert metrics["num_rows"] > 0 and metrics["logloss"] < 2.0  # 200 rows: a path check, not accuracy
