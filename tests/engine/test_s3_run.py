"""Parquet in from S3, checkpoints and run outputs out to S3, resume from S3 — on a moto server
on 127.0.0.1 — and no credential ever lands in a saved file or a log."""

import json
import os

import fsspec
import pytest

from distrec.cli import main


@pytest.mark.ray
def test_train_checkpoint_resume_on_s3(s3_bucket, ray_cluster, capfd):
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    base = ["run", "configs/ctr/smoke.yaml", f"run.output_dir={s3_bucket}/runs",
            f"data.train={s3_bucket}/data/train", f"data.valid={s3_bucket}/data/valid", "data.test=null",
            f"data.schema={s3_bucket}/data/train/schema.yaml", "data.synth.rows=4000",
            "data.synth.valid_rows=1000", "data.synth.rows_per_file=1000", "trainer.epochs=1"]
    assert main([*base, "trainer.max_steps=5"]) == 0
    assert main([*base, "run.resume=true"]) == 0

    fs = fsspec.filesystem("s3")
    run_dir = f"{s3_bucket}/runs/ctr-smoke"
    records = [json.loads(line) for line in fs.cat_file(f"{run_dir}/metrics.jsonl").decode().splitlines()]
    evals = [r for r in records if "auc" in r]
    assert [r["step"] for r in evals] == [5, 8]  # stopped at 5, resumed from it to the end (8 steps)
    assert evals[-1]["num_rows"] == 1000 and 0.5 < evals[-1]["auc"] <= 1.0
    assert fs.cat_file(f"{run_dir}/checkpoints/latest").decode() == "step-000000008"
    assert fs.exists(f"{run_dir}/checkpoints/step-000000008/meta.json")
    assert fs.ls(f"{run_dir}/tensorboard")

    saved = [fs.cat_file(f"{run_dir}/config.yaml").decode(), fs.cat_file(f"{run_dir}/metrics.jsonl").decode()]
    logs = capfd.readouterr()
    for text in (*saved, logs.out, logs.err):
        assert secret not in text
