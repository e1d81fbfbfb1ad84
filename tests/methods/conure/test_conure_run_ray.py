"""`distrec conure run` on the shared local Ray cluster: the smoke config's 3 ml-100k tasks on
2 workers, then `distrec conure report --no-run` over that run."""

import json

import pytest

from distrec.cli import main


@pytest.mark.ray
def test_conure_smoke_run_learns_three_tasks_and_reports(tmp_path, shared_data, ray_cluster, capsys):
    args = ["configs/conure/smoke.yaml", f"run.output_dir={tmp_path / 'runs'}",
            f"method.data_root={tmp_path / 'data'}", f"method.prepare.src={shared_data / 'ml-100k'}",
            "method.max_steps_per_phase=4", "trainer.log_every=100"]
    assert main(["run", *args]) == 0  # `distrec conure run` is the same command
    run = tmp_path / "runs" / "conure-smoke"
    state = json.loads((run / "conure_state.json").read_text())
    assert [t["name"] for t in state["tasks"]] == ["t1_next_item", "t2_liked_item", "t3_gender"]
    final = state["history"][-1]["metrics"]
    for name, metric in (("t1_next_item", "mrr@5"), ("t2_liked_item", "mrr@5"), ("t3_gender", "accuracy")):
        assert 0.0 <= final[name][metric] <= 1.0 and final[name]["num_rows"] > 0

    assert main(["conure", "report", *args, "--no-run"]) == 0
    report = json.loads((run / "report" / "conure_report.json").read_text())
    conure = report["strategies"]["conure"]
    assert all(v is True for v in conure["old_task_outputs_bit_identical"].values())
    assert set(conure["main_metric"]["t1_next_item"]) == {"1", "2", "3"} or \
        set(conure["main_metric"]["t1_next_item"]) == {1, 2, 3}
    assert (run / "report" / "conure_report.png").read_bytes()[:4] == b"\x89PNG"
    assert "t3_gender" in (run / "report" / "conure_report.md").read_text()
