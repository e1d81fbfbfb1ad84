"""StackRec on Ray (the shared local cluster): a stage survives a killed worker (Ray restarts the
group from the stage's last evaluation checkpoint), and the report runs as a sweep over
``method.variant`` x seeds that a rerun does not train again."""

import json

import pytest
from test_stackrec_smoke import smoke_config, smoke_overrides

from distrec.cli import main
from distrec.methods import prepare_data
from distrec.methods.stackrec.report import PLOT
from distrec.methods.stackrec.scenario import ray_launcher, run_variant


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_stage_on_ray_restarts_from_its_last_evaluation_after_a_worker_dies(tmp_path, ray_cluster):
    cfg = smoke_config(tmp_path, tmp_path / "data", "method.stages=[{blocks: 2, max_steps: 20}]",
                       "trainer.early_stopping.patience=10", "trainer.max_failures=1", "trainer.fail_at_step=12")
    prepare_data(cfg)
    result = run_variant(cfg, "adjacent", ray_launcher)
    stage_dir = tmp_path / "runs" / "stackrec-smoke" / "adjacent" / "stage-0"
    assert (stage_dir / ".failed-at-step-12").is_file()  # the drill did kill a worker
    records = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r["step"] for r in records if "mrr@5" in r and "test/mrr@5" not in r]  # not the final line
    # restarted from an evaluation's checkpoint (step 5 or 10: Ray may not have taken in the last
    # report before the worker died), not from the start: step 5 is evaluated once
    assert evaluated.count(5) == 1 and evaluated[-3:] == [10, 15, 20]
    summary = result["stages"][0]["summary"]
    assert summary["steps"] == 20 and [p["step"] for p in summary["curve"]] == [5, 10, 15, 20]
    assert summary["test"]["num_rows"] == 20 and 0.0 <= summary["test"]["mrr@5"] <= 1.0


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_report_is_a_sweep_of_variants_times_seeds_and_a_rerun_trains_nothing(tmp_path, ray_cluster, capsys):
    """scratch and adjacent x seeds 0, 1: four trials (two at a time, one worker each), each its
    variant's stages on Ray Train inside a Tune trial (the recipe's trial hook)."""
    args = ["stackrec", "report", "configs/stackrec/smoke.yaml", *smoke_overrides(
        tmp_path, tmp_path / "data", "method.stages=[{blocks: 1, max_steps: 5}, {blocks: 2, max_steps: 5}]",
        "trainer.num_workers=1", "trainer.cpus_per_worker=0.5", "sweep.seeds=[0,1]", "sweep.max_concurrent=2",
        "sweep.poll_s=0.5"), "--variants", "scratch,adjacent"]
    assert main(args) == 0
    sweep_dir = tmp_path / "runs" / "stackrec-smoke-report"
    trial_dirs = {(v, s): sweep_dir / f"method.variant={v}_seed={s}" for v in ("scratch", "adjacent") for s in (0, 1)}
    for (variant, seed), trial_dir in trial_dirs.items():
        result = json.loads((trial_dir / variant / "variant.json").read_text())
        assert result["variant"] == variant and result["steps"] == ([10] if variant == "scratch" else [5, 5])
        stage = json.loads((trial_dir / variant / "stage-0" / "summary.json").read_text())
        assert stage["steps"] == result["steps"][0]
        assert f"seed: {seed}" in (trial_dir / variant / "stage-0" / "config.yaml").read_text()
        record = json.loads((trial_dir / "trial.json").read_text())
        assert record["status"] == "finished" and record["metrics"]["test_mrr@5"] == result["test"]["mrr@5"]

    report = json.loads((sweep_dir / "report.json").read_text())
    rows = {r["variant"]: r for r in report["variants"]}
    assert list(rows) == ["scratch", "adjacent"] and rows["adjacent"]["seeds"] == [0, 1]
    assert rows["adjacent"]["stages"] == [1, 2] and rows["scratch"]["stages"] == [2]
    assert rows["adjacent"]["vs_scratch"]["n"] == 2 and rows["scratch"]["vs_scratch"] is None
    assert len(rows["adjacent"]["time_to_best_s"]) == 2  # mean, std over the seeds
    assert set(report["curves"]["adjacent"]) == {"0", "1"}
    markdown = (sweep_dir / "report.md").read_text()
    assert "| adjacent | 2 | 1→2 | 5+5 |" in markdown and "| scratch | 2 | 2 | 10 |" in markdown
    assert "## Test MRR@5 minus scratch's, paired by seed" in markdown and "**Verdict:** adjacent:" in markdown
    assert (sweep_dir / PLOT).read_bytes()[:4] == b"\x89PNG"
    sweep = json.loads((sweep_dir / "results.json").read_text())
    assert sweep["metric"] == "test_mrr@5" and sweep["baseline"] == "method.variant=scratch"
    assert len(sweep["trials"]) == 4 and sweep["unfinished"] == []

    trained = {p: p.stat().st_mtime_ns for d in trial_dirs.values() for p in d.rglob("*") if p.is_file()}
    (sweep_dir / "report.md").unlink()
    capsys.readouterr()
    assert main(args) == 0  # the rerun: every trial has its result, nothing trains
    assert {p: p.stat().st_mtime_ns for d in trial_dirs.values() for p in d.rglob("*") if p.is_file()} == trained
    assert "| adjacent | 2 | 1→2 | 5+5 |" in (sweep_dir / "report.md").read_text()
    assert "report written to" in capsys.readouterr().out
