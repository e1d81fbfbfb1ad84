"""Bring your own data, end to end on Ray workers: a FuxiCTR-like click table imported with
`distrec data import table` trains the CTR recipe (one label) and EGEAN (click + conversion); a
YooChoose-style log imported with `distrec data import interactions` trains StackRec."""

import json

import pyarrow.parquet as pq
import pytest
from byo_files import click_table_rows, write_delimited, write_spec, yoochoose_clicks

from distrec.cli import main


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("byo-table")
    src = write_delimited(tmp / "clicks.csv", click_table_rows(2000))
    spec = write_spec(tmp / "spec.yaml", split="{by: time, column: ts, fractions: [0.8, 0.2, 0.0]}")
    assert main(["data", "import", "table", str(src), str(tmp / "data"), "--spec", str(spec)]) == 0
    return tmp / "data"


def data_overrides(data) -> list[str]:
    return [f"data.train={data / 'train'}", f"data.valid={data / 'valid'}", f"data.schema={data / 'schema.yaml'}"]


def last_metrics(run_dir) -> dict:
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_ctr_trains_on_an_imported_click_table(table, tmp_path, ray_cluster):
    assert main(["run", "configs/ctr/table-smoke.yaml", f"run.output_dir={tmp_path}", *data_overrides(table),
                 "trainer.max_steps=10"]) == 0
    metrics = last_metrics(tmp_path / "ctr-table-smoke")
    assert metrics["num_rows"] == pq.ParquetDataset(str(table / "valid")).read(columns=["click"]).num_rows == 400
    assert 0.0 < metrics["logloss"] < 2.0 and "gauc" in metrics  # a path check: 10 steps


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_egean_trains_on_the_click_and_conversion_labels(table, tmp_path, ray_cluster):
    assert main(["run", "configs/egean/base.yaml", "run.name=egean-table", f"run.output_dir={tmp_path}",
                 *data_overrides(table), "data.batch_size=64", "data.eval_batch_size=256",
                 "method.conversion_label=conversion", "trainer.max_steps=6"]) == 0
    metrics = last_metrics(tmp_path / "egean-table")
    assert metrics["ctr_num_rows"] == 400 and metrics["ctcvr_logloss"] > 0


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_stackrec_trains_on_an_imported_interaction_log(tmp_path, ray_cluster):
    src = yoochoose_clicks(tmp_path / "yoochoose-clicks.dat", sessions=300)
    data = tmp_path / "data"
    assert main(["data", "import", "interactions", str(src), str(data), "--columns", "0,2,1", "--max-len", "8"]) == 0
    assert main(["run", "configs/stackrec/smoke.yaml", f"run.output_dir={tmp_path / 'runs'}",
                 f"data.schema={data}/schema.yaml", f"data.train={data}/train", f"data.valid={data}/valid",
                 f"data.test={data}/test", "trainer.max_steps=6", "trainer.log_every=100"]) == 0
    summary = json.loads((tmp_path / "runs" / "stackrec-smoke" / "summary.json").read_text())
    test_rows = pq.ParquetDataset(str(data / "test")).read().num_rows
    assert summary["steps"] == 6 and summary["test"]["num_rows"] == test_rows > 0
