"""`distrec conure report` on the shared local Ray cluster: the smoke config's sweep trimmed to two
strategies (conure, finetune_all) x one seed, each trial the 3 ml-100k tasks on 2 workers with a
few steps per phase; then a rerun that trains nothing again, and `--no-run` over the finished trials."""

import json

import pytest
import torch

from distrec.cli import main


@pytest.mark.ray
def test_conure_report_sweep_learns_three_tasks_and_reports(tmp_path, shared_data, ray_cluster, capsys):
    args = ["configs/conure/smoke.yaml", f"run.output_dir={tmp_path / 'runs'}",
            f"method.data_root={tmp_path / 'data'}", f"method.prepare.src={shared_data / 'ml-100k'}",
            "method.max_steps_per_phase=4", "trainer.log_every=100", "metrics.tensorboard=false",
            "sweep.grid.method.strategy=[conure,finetune_all]", "sweep.poll_s=0.5"]
    assert main(["conure", "report", *args]) == 0
    sweep = tmp_path / "runs" / "conure-smoke-report"
    assert str(sweep / "conure_report.md") in capsys.readouterr().out
    results = json.loads((sweep / "results.json").read_text())
    assert results["unfinished"] == [] and {t["overrides"]["method.strategy"] for t in results["trials"]} == \
        {"conure", "finetune_all"}
    runs = {t["overrides"]["method.strategy"]: sweep / t["id"] for t in results["trials"]}
    for run in runs.values():
        state = json.loads((run / "conure_state.json").read_text())
        assert [t["name"] for t in state["tasks"]] == ["t1_next_item", "t2_liked_item", "t3_gender"]
        final = state["history"][-1]["metrics"]
        for name, metric in (("t1_next_item", "mrr@5"), ("t2_liked_item", "mrr@5"), ("t3_gender", "accuracy")):
            assert 0.0 <= final[name][metric] <= 1.0 and final[name]["num_rows"] > 0

    report = json.loads((sweep / "conure_report.json").read_text())
    conure, finetune = report["strategies"]["conure"], report["strategies"]["finetune_all"]
    assert all(v is True for v in conure["old_task_outputs_bit_identical"].values())
    assert conure["forgetting"]["t1_next_item"]["mean"] == 0.0  # old tasks never change
    assert set(conure["main_metric"]["t1_next_item"]) == {"1", "2", "3"}
    assert finetune["old_task_outputs_bit_identical"]["t1_next_item"] is False  # fine-tuning moved T1
    t1 = runs["finetune_all"] / "probes"
    assert not torch.equal(torch.load(t1 / "stage-01" / "t1_next_item.pt"), torch.load(t1 / "stage-03" / "t1_next_item.pt"))
    assert (sweep / "conure_report.png").read_bytes()[:4] == b"\x89PNG"
    table = (sweep / "conure_report.md").read_text()
    assert "t3_gender" in table and "## Forgetting" in table and "## finetune_all" in table

    trial_files = {p: p.stat().st_mtime_ns for run in runs.values() for p in run.rglob("*") if p.is_file()}
    assert main(["conure", "report", *args]) == 0  # a rerun trains nothing again
    assert {p: p.stat().st_mtime_ns for p in trial_files} == trial_files
    (sweep / "conure_report.md").unlink()
    assert main(["conure", "report", *args, "--no-run"]) == 0  # the report from the finished trials alone
    assert (sweep / "conure_report.md").read_text() == table
