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


@pytest.mark.ray
def test_run_reaches_s3_through_the_configured_endpoint_only(s3_server, s3_bucket, ray_cluster, monkeypatch):
    """The driver's every S3 path (schema, data, run lock, config, Ray Train's storage, curves,
    summary) goes through data.s3_endpoint_url: AWS_ENDPOINT_URL is unset in the driver."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert main(["run", "configs/ctr/smoke.yaml", f"run.output_dir={s3_bucket}/runs", f"data.s3_endpoint_url={s3_server}",
                 f"data.train={s3_bucket}/data/train", "data.valid=null", "data.test=null",
                 f"data.schema={s3_bucket}/data/train/schema.yaml", "data.synth.rows=2000",
                 "data.synth.rows_per_file=1000", "trainer.epochs=1", "trainer.max_steps=3"]) == 0
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": s3_server})
    run_dir = f"{s3_bucket}/runs/ctr-smoke"
    assert json.loads(fs.cat_file(f"{run_dir}/summary.json"))["final"]["step"] == 3
    assert fs.exists(f"{run_dir}/curves.png") and not fs.exists(f"{run_dir}/run.lock")


def test_worker_takes_the_configured_endpoint(monkeypatch):
    """Workers' own S3 clients (checkpoints, metrics, the schema) take no endpoint argument: the
    worker entry makes data.s3_endpoint_url its process's AWS_ENDPOINT_URL before the recipe runs."""
    import sys
    import types

    from distrec.config.load import config_to_dict
    from distrec.methods import load_config
    from distrec.train.launcher import ray_worker_entry

    seen = []
    entry = types.ModuleType("fake_recipe")
    entry.train_worker = lambda cfg, in_ray: seen.append(os.environ.get("AWS_ENDPOINT_URL"))
    monkeypatch.setitem(sys.modules, "fake_recipe", entry)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    cfg = load_config("configs/ctr/smoke.yaml", ["data.s3_endpoint_url=http://127.0.0.1:9"])
    ray_worker_entry({"config": config_to_dict(cfg), "entry": "fake_recipe:train_worker"})
    assert seen == ["http://127.0.0.1:9"]
