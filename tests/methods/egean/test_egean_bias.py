"""The benchmark the recipe exists for, small: on ground-truth data with strong covariate shift,
ESCM²-DR and EGEAN are less biased over the exposure space than a CVR model trained on clicks.

Runs through ``distrec egean report`` = the config's sweep (3 variants x 1 shift x 2 seeds, one
worker per trial) on the shared local Ray cluster, so the report's files and the sweep's resume
are checked too. Sizes: 4,000 impressions of 200 users and 300 items (id effects only, doubled
spread: naive bias 0.04-0.12 on the seeds tried, ESCM²-DR and EGEAN at most about half of it),
4 epochs. With weaker shift or more dense features the naive model's bias (~0.02) sank into the
training noise of the calibration (±0.02) and the comparison stopped being reliable.
"""

import json

import pytest

from distrec.cli import main

MODELS = ["naive_cvr", "escm2_dr", "egean"]


@pytest.mark.ray
def test_debiased_models_beat_naive_cvr_on_exposure_space_bias(tmp_path, ray_cluster, capsys):
    data = str(tmp_path / "data" / "shift-${method.ground_truth.shift}-seed-${run.seed}")
    args = [
        "configs/egean/smoke.yaml",
        f"run.output_dir={tmp_path / 'runs'}", "sweep.name=bias", "sweep.max_concurrent=2", "sweep.poll_s=0.5",
        f"data.train={data}/train", f"data.valid={data}/valid", f"data.schema={data}/schema.yaml",
        "method.ground_truth.seed=${run.seed}",
        "trainer.num_workers=1", "trainer.epochs=4", "trainer.log_every=1000", "metrics.tensorboard=false",
        "data.batch_size=256", "sharding.tables={}",
        "method.ground_truth.rows=4000", "method.ground_truth.valid_rows=3000",
        "method.ground_truth.driver_scale=2.0",
        "method.ground_truth.ctr_bias=0.0", "method.ground_truth.num_dense=0",
        "method.ground_truth.num_users=200", "method.ground_truth.num_items=300",
        f"sweep.grid.model.variant=[{','.join(MODELS)}]", "sweep.grid.method.ground_truth.shift=[2.0]",
        "sweep.seeds=[0,1]", "sweep.metric=cvr_exposure_auc",
    ]
    assert main(["egean", "report", *args]) == 0
    out = tmp_path / "runs" / "bias"
    assert f"6 of 6 trials have results; wrote report.md, report.json and bias_vs_shift.png to {out}" \
        in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["shift-2.0-seed-0", "shift-2.0-seed-1"]

    report = json.loads((out / "report.json").read_text())
    runs = report["runs"]
    assert len(runs) == len(MODELS) * 2
    bias = {m: [r["cvr_bias_exposure"] for r in sorted(runs, key=lambda r: r["seed"]) if r["variant"] == m]
            for m in MODELS}
    # the naive model over-predicts: its clicked training rows convert better than impressions do
    assert min(bias["naive_cvr"]) > 0.02
    for seed in range(2):
        naive = abs(bias["naive_cvr"][seed])
        assert abs(bias["escm2_dr"][seed]) < naive, bias
        assert abs(bias["egean"][seed]) < naive, bias
    for r in runs:  # the same validation impressions are scored for every model of a seed
        assert r["cvr_mean_true_exposure"] == next(x for x in runs if x["seed"] == r["seed"])["cvr_mean_true_exposure"]
        assert 0.6 < r["cvr_exposure_auc"] < 1.0
        assert r["cvr_relative_bias_exposure"] == pytest.approx(r["cvr_bias_exposure"] / r["cvr_mean_true_exposure"])

    summary = report["summary"]["escm2_dr"]["2"]["cvr_bias_exposure"]
    assert summary["n"] == 2 and abs(summary["mean"] - sum(bias["escm2_dr"]) / 2) < 1e-12
    naive_vs_dr = next(p for p in report["paired"] if p["variant"] == "naive_cvr" and p["reference"] == "escm2_dr"
                       and p["metric"] == "cvr_abs_bias_exposure")
    assert naive_vs_dr["n"] == 2 and naive_vs_dr["mean"] > 0  # naive's |bias| is larger, seed by seed
    table = (out / "report.md").read_text()
    assert "| naive_cvr |" in table and "CVR bias over the exposure space" in table
    assert "minus escm2_dr, paired by seed" in table
    assert (out / "bias_vs_shift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "results.json").read_text())["unfinished"] == []  # the sweep's own files

    trial_files = {p: p.stat().st_mtime_ns for r in runs for p in (out / r["trial"]).rglob("*") if p.is_file()}
    (out / "report.md").unlink()
    assert main(["egean", "report", *args]) == 0  # a rerun trains nothing again and rewrites the report
    assert {p: p.stat().st_mtime_ns for p in trial_files} == trial_files
    assert (out / "report.md").read_text() == table


def test_report_tables_come_from_the_sweeps_records():
    """The report's statistics are the sweep's: mean ± sample std per variant and shift, and
    differences against ESCM²-DR paired by seed, from results.json-style trial records."""
    from distrec.experiments.results import mean_std, paired_difference
    from distrec.methods import load_config
    from distrec.methods.egean.report import build_report, markdown

    cfg = load_config("configs/egean/ground-truth.yaml",
                      ["sweep.grid.model.variant=[escm2_dr,naive_cvr]", "sweep.grid.method.ground_truth.shift=[0.0,2.0]",
                       "sweep.seeds=[0,1,2]"])
    bias = {("escm2_dr", 0.0): [0.01, -0.01, 0.0], ("escm2_dr", 2.0): [0.02, 0.01, 0.03],
            ("naive_cvr", 0.0): [0.0, 0.01, 0.02], ("naive_cvr", 2.0): [0.08, 0.06, 0.07]}
    trials = [{"id": f"{v}-{s}-{seed}", "seed": seed, "status": "finished",
               "overrides": {"model.variant": v, "method.ground_truth.shift": s},
               "metrics": {"cvr_bias_exposure": b, "cvr_mean_true_exposure": 0.2, "cvr_exposure_auc": 0.8 - b}}
              for (v, s), values in bias.items() for seed, b in enumerate(values)]
    report = build_report(cfg, {"sweep": "t", "trials": trials, "unfinished": []})

    cell = report["summary"]["naive_cvr"]["2"]
    assert (cell["cvr_bias_exposure"]["mean"], cell["cvr_bias_exposure"]["std"]) == mean_std(bias[("naive_cvr", 2.0)])
    assert cell["cvr_relative_bias_exposure"]["mean"] == pytest.approx(0.07 / 0.2)
    paired = next(p for p in report["paired"] if p["variant"] == "naive_cvr" and p["shift"] == 2.0
                  and p["metric"] == "cvr_abs_bias_exposure")
    expected = paired_difference(dict(enumerate(bias[("naive_cvr", 2.0)])), dict(enumerate(bias[("escm2_dr", 2.0)])))
    assert paired["reference"] == "escm2_dr" and paired["mean"] == pytest.approx(expected.mean)
    assert paired["ci_low"] == pytest.approx(expected.ci_low) and paired["n"] == 3
    table = markdown(report)
    assert "| naive_cvr | +0.0100 ± 0.0100 | +0.0700 ± 0.0100 |" in table
    assert "## |CVR bias| over the exposure space: model minus escm2_dr, paired by seed" in table
