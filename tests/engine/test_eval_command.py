"""`distrec eval` on the shared local Ray cluster: a trained smoke run's best weights scored on
its test split give exactly the test metrics the run reported; bad checkpoints are refused."""

import json

import pytest
from test_run_ray import smoke_args

from distrec.cli import main


@pytest.mark.ray
def test_eval_of_the_best_checkpoint_reproduces_the_runs_test_metrics(tmp_path, ray_cluster, capsys):
    assert main(smoke_args(tmp_path, "trainer.max_steps=24", "trainer.eval_every=8",
                           "trainer.early_stopping.metric=auc")) == 0
    run_dir = tmp_path / "runs" / "ctr-smoke"
    reported = json.loads((run_dir / "summary.json").read_text())["test"]
    capsys.readouterr()

    config_args = smoke_args(tmp_path)[1:]
    assert main(["eval", *config_args, "--checkpoint", str(run_dir), "--split", "test"]) == 0
    printed = json.loads(capsys.readouterr().out)
    for key in ("auc", "gauc", "logloss", "num_rows"):
        assert printed[key] == pytest.approx(reported[key], rel=1e-9, abs=1e-12)
    evaluated = list((run_dir / "eval").iterdir())
    assert len(evaluated) == 1 and evaluated[0].name.startswith("test-step-")
    saved = json.loads((evaluated[0] / "summary.json").read_text())
    assert saved["final"]["auc"] == printed["auc"] and "/best/" in saved["checkpoint"]

    # the valid split by name, and a Parquet path: the same files give the same metrics
    assert main(["eval", *config_args, "--checkpoint", saved["checkpoint"], "--split",
                 str(tmp_path / "data" / "test")]) == 0
    assert json.loads(capsys.readouterr().out)["auc"] == pytest.approx(printed["auc"], rel=1e-9)


def test_eval_refuses_a_path_that_holds_no_checkpoint(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["eval", "configs/ctr/smoke.yaml", "--checkpoint", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert f"--checkpoint {tmp_path / 'empty'}: neither a checkpoint (no meta.json) nor a run directory" in err
