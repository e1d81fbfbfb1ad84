"""`distrec run` end to end on the shared local Ray cluster: the path `make demo` takes."""

import json
import os
import shutil
import uuid

import pytest
import yaml

from distrec.cli import main


def smoke_args(tmp_path, *extra):
    data = tmp_path / "data"
    return ["run", "configs/ctr/smoke.yaml", f"run.output_dir={tmp_path / 'runs'}",
            f"data.train={data / 'train'}", f"data.valid={data / 'valid'}", f"data.test={data / 'test'}",
            f"data.schema={data / 'train' / 'schema.yaml'}", "data.synth.rows=8000",
            "data.synth.test_rows=2000",
            "data.synth.valid_rows=2000", *extra]


@pytest.mark.ray
def test_smoke_run_trains_reports_and_resumes(tmp_path, ray_cluster, capsys):
    mlflow_uri = f"file://{tmp_path / 'mlruns'}"
    assert main(smoke_args(tmp_path, "trainer.max_steps=20", f"metrics.mlflow_tracking_uri={mlflow_uri}")) == 0
    run_dir = tmp_path / "runs" / "ctr-smoke"
    first = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    first_valid = [r for r in first if "auc" in r]
    assert first[-1]["step"] == 20 and first_valid[-1]["step"] == 20

    assert main(smoke_args(tmp_path, "run.resume=true")) == 0

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in records if "auc" in r][-1]  # the last validation record
    # 8000 rows / (256 x 2) per step -> 16 steps per epoch, 2 epochs; resumed at step 20
    assert final["step"] == 32
    assert 0.6 < final["auc"] <= 1.0 and 0.55 < final["gauc"] <= 1.0 and final["logloss"] < 0.69
    assert final["num_rows"] == 2000
    # then the test split, scored once with the last weights: the last record, and the run's result
    test = records[-1]
    assert test["step"] == 32 and test["test/num_rows"] == 2000 and 0.6 < test["test/auc"] <= 1.0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final"]["test/auc"] == test["test/auc"] and summary["final"]["auc"] == final["auc"]

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["run"]["resume"] is True and saved["trainer"]["num_workers"] == 2
    assert (run_dir / "checkpoints" / "latest").read_text() == "step-000000032"
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(run_dir / "tensorboard"))
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"

    import mlflow  # the first run also logged to MLflow: params from the config, eval metrics by step

    mlflow.set_tracking_uri(mlflow_uri)
    runs = mlflow.search_runs(experiment_names=["distrec"], output_format="list")
    assert len(runs) == 1 and runs[0].data.params["trainer.num_workers"] == "2"
    history = mlflow.tracking.MlflowClient().get_metric_history(runs[0].info.run_id, "auc")
    assert [m.step for m in history] == [16, 20] and history[-1].value == pytest.approx(first_valid[-1]["auc"])


@pytest.mark.ray
def test_resume_after_pruned_checkpoints_and_a_fresh_rerun(tmp_path, ray_cluster):
    """A launch does not inherit Ray Train's checkpoint registry from an earlier one: run.resume
    continues from the run's newest checkpoint even after the ones Ray listed were pruned, and a
    rerun without run.resume starts over (metrics.jsonl holds only the new run's records)."""
    run_dir = tmp_path / "runs" / "ctr-smoke"

    def steps(path=run_dir / "metrics.jsonl"):  # of the evaluations
        return [r["step"] for r in map(json.loads, path.read_text().splitlines()) if "auc" in r]

    # 16 steps per epoch; checkpoints (keep 2) at every evaluation: 8, 16, 24, 32 -> 24 and 32 kept
    assert main(smoke_args(tmp_path, "trainer.eval_every=8", "trainer.eval_at_epoch_end=false")) == 0
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["latest", "step-000000024", "step-000000032"]
    assert main(smoke_args(tmp_path, "trainer.eval_every=8", "trainer.eval_at_epoch_end=false",
                           "trainer.epochs=3", "run.resume=true")) == 0
    assert steps() == [8, 16, 24, 32, 40, 48]  # went on from step 32; nothing logged twice

    assert main(smoke_args(tmp_path, "trainer.max_steps=8", "trainer.eval_every=8",
                           "trainer.eval_at_epoch_end=false")) == 0
    assert steps() == [8]  # started over: step 8 of a new run, not the old run's step 48
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["latest", "step-000000008"]
    (aside,) = (run_dir / "earlier").iterdir()  # the earlier run is set aside, not deleted
    assert sorted(os.listdir(aside / "checkpoints")) == ["latest", "step-000000040", "step-000000048"]
    assert steps(aside / "metrics.jsonl") == [8, 16, 24, 32, 40, 48]


@pytest.mark.ray
def test_demo_config_with_relative_paths(ray_cluster):
    """`make demo` runs configs/ctr/smoke.yaml as written: relative paths, from the checkout."""
    scratch = f"runs/pytest-{uuid.uuid4().hex[:8]}"
    try:
        assert main(["run", "configs/ctr/smoke.yaml", f"run.output_dir={scratch}",
                     f"data.train={scratch}/data/train", f"data.valid={scratch}/data/valid",
                     f"data.test={scratch}/data/test", "data.synth.test_rows=1000",
                     f"data.schema={scratch}/data/train/schema.yaml", "data.synth.rows=4000",
                     "data.synth.valid_rows=1000", "trainer.epochs=1"]) == 0
        final = json.loads(open(f"{scratch}/ctr-smoke/summary.json").read())["final"]
        assert final["num_rows"] == final["test/num_rows"] == 1000 and final["auc"] > 0.5
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
