"""`distrec sweep`: trial expansion, result statistics, bad sweep keys, and a real 2x2 grid x 2 seeds
sweep on the shared Ray cluster, resumed after a trial failed without rerunning finished trials."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from distrec.cli import main
from distrec.errors import ConfigError
from distrec.experiments.results import (
    FINISHED,
    RESULT_FILES,
    STOPPED_EARLY,
    collect_records,
    mean_std,
    paired_difference,
    summarize,
    write_results,
)
from distrec.experiments.sweep import plan_sweep
from distrec.experiments.trials import (
    Trial,
    baseline_point,
    expand_trials,
    grid_points,
    random_points,
    trial_config,
    trial_id,
    write_trial_record,
)
from distrec.methods import load_config

SWEEP_CONFIG = "configs/ctr/sweep-smoke.yaml"


def sweep_args(tmp_path, *extra):
    """The sweep smoke config, trimmed so a trial takes seconds: 1 worker, 6 steps."""
    data = tmp_path / "data"
    return [f"run.output_dir={tmp_path / 'runs'}", f"data.train={data / 'train'}", f"data.valid={data / 'valid'}",
            f"data.test={data / 'test'}", "data.synth.test_rows=500", f"data.schema={data / 'train' / 'schema.yaml'}", "data.synth.rows=2000", "data.synth.valid_rows=500",
            "trainer.num_workers=1", "trainer.max_steps=6", "trainer.eval_every=2", "sweep.max_concurrent=3",
            "sweep.poll_s=0.5", *extra]


# --- (a) expansion and trial ids -------------------------------------------------------------------


def test_grid_points_are_the_cartesian_product_in_key_order():
    points = grid_points({"dense.lr": [0.1, 0.2], "model.cross_layers": [1, 2, 3]})
    assert points == [{"dense.lr": lr, "model.cross_layers": c} for lr in (0.1, 0.2) for c in (1, 2, 3)]
    assert grid_points({}) == [{}]
    with pytest.raises(ConfigError, match="'a' has no values"):
        grid_points({"a": []})


def test_random_points_are_seeded_distinct_and_inside_the_space():
    space = {"dense.lr": [0.1, 0.2, 0.3], "model.cross_layers": [1, 2, 3, 4], "model.dropout": [0.0, 0.5]}
    first = random_points(space, 10, seed=7)
    assert first == random_points(dict(reversed(list(space.items()))), 10, seed=7)  # key order is irrelevant
    assert first != random_points(space, 10, seed=8)
    assert len(first) == 10 and len({json.dumps(p, sort_keys=True) for p in first}) == 10
    assert all(p[k] in space[k] for p in first for k in space)
    everything = random_points(space, 100, seed=0)  # more samples than points: each point once
    assert sorted(json.dumps(p, sort_keys=True) for p in everything) == \
        sorted(json.dumps(p, sort_keys=True) for p in grid_points(space))
    assert random_points({}, 5, seed=0) == [{}]


def test_trial_ids_are_readable_stable_and_path_safe():
    assert trial_id({"dense.lr": 0.001, "model.cross_layers": 2}, 0) == "dense.lr=0.001_model.cross_layers=2_seed=0"
    assert trial_id({"model.over_arch": [64, 32]}, 1) == "model.over_arch=64+32_seed=1"
    odd = trial_id({"run.init_from": "s3://b/ckpt dir"}, 0)
    assert re.fullmatch(r"[A-Za-z0-9._+=-]+", odd) and odd.startswith("run.init_from=s3-")
    assert odd == trial_id({"run.init_from": "s3://b/ckpt dir"}, 0)
    assert odd != trial_id({"run.init_from": "s3://b/ckpt_dir"}, 0)  # the hash tells them apart
    assert len(trial_id({f"model.k{i}": "x" * 30 for i in range(10)}, 0)) <= 96


def test_trials_are_points_times_seeds_with_their_overrides_applied(tmp_path):
    cfg = load_config(SWEEP_CONFIG, sweep_args(tmp_path, "sweep.seeds=[3,4]", "sweep.num_samples=2",
                                               "sweep.random.model.dropout=[0.0,0.1,0.2]", "sweep.random_seed=1"))
    trials = expand_trials(cfg)
    assert len(trials) == 2 * 2 * 2 * 2 and len({t.id for t in trials}) == 16
    assert [t.seed for t in trials[:2]] == [3, 4] and trials[0].point == trials[1].point
    trial = trials[-1]
    tcfg = trial_config(cfg, trial)
    assert tcfg.dense.lr == trial.point["dense.lr"] and tcfg.model.cross_layers == trial.point["model.cross_layers"]
    assert tcfg.model.dropout == trial.point["model.dropout"] and tcfg.run.seed == 4
    assert tcfg.run.name == f"ctr-sweep-smoke/{trial.id}" and tcfg.run.output_dir == str(tmp_path / "runs")
    assert cfg.run.seed == 0 and cfg.dense.lr == 0.001  # the base config is left as it was
    with pytest.raises(ConfigError, match="appears twice"):
        expand_trials(load_config(SWEEP_CONFIG, sweep_args(tmp_path, "sweep.seeds=[1,1]")))


def test_swept_keys_from_the_command_line_and_nested_yaml(tmp_path):
    cfg = load_config(SWEEP_CONFIG, ["sweep.grid.dense.lr=[0.001,0.01,0.1]", "sweep.baseline.dense.lr=0.01"])
    assert cfg.sweep.grid["dense.lr"] == [0.001, 0.01, 0.1] and cfg.sweep.grid["model.cross_layers"] == [1, 2]
    points = grid_points(dict(cfg.sweep.grid))
    assert points[baseline_point(points, dict(cfg.sweep.baseline))]["dense.lr"] == 0.01
    with pytest.raises(ConfigError, match="matches no point"):
        baseline_point(points, {"dense.lr": 0.5})
    nested = tmp_path / "nested.yaml"
    nested.write_text(yaml.safe_dump({"defaults": [str(Path(SWEEP_CONFIG).resolve())],
                                      "sweep": {"grid": {"model": {"cross_layers": [1, 3]}}}}))
    assert load_config(str(nested)).sweep.grid["model.cross_layers"] == [1, 3]


def test_asha_needs_a_step_budget_and_schedules_on_steps(tmp_path):
    """ASHA itself ran by hand (4 learning rates, 24 steps: the smallest was stopped at step 4,
    its Ray Train run with it); here only its wiring, which needs no Ray."""
    from ray.tune.schedulers import ASHAScheduler

    from distrec.experiments.sweep import _scheduler

    with pytest.raises(ConfigError, match="trainer.max_steps"):
        plan_sweep(load_config(SWEEP_CONFIG, sweep_args(tmp_path, "sweep.asha=true", "trainer.max_steps=-1")))
    plan = plan_sweep(load_config(SWEEP_CONFIG, sweep_args(tmp_path, "sweep.asha=true", "sweep.asha_grace_steps=2",
                                                            "sweep.mode=min", "sweep.metric=logloss")))
    asha = _scheduler(plan)
    assert isinstance(asha, ASHAScheduler) and asha._time_attr == "step" and asha._max_t == 6
    assert asha._metric == "logloss" and asha._mode == "min" and not asha._stop_last_trials
    assert _scheduler(plan_sweep(load_config(SWEEP_CONFIG, sweep_args(tmp_path)))) is None


def test_a_recipe_trial_hook_computes_the_trial_instead_of_train(tmp_path, monkeypatch):
    """A trial is ``distrec run`` unless the recipe names a trial hook (StackRec: a variant's stages)."""
    import distrec.methods
    import distrec.methods.stackrec.scenario as scenario
    from distrec.methods import recipe, train_trial

    seen = []
    monkeypatch.setattr(distrec.methods, "train", lambda cfg: seen.append(("train", cfg.run.recipe)) or {"auc": 0.7})
    monkeypatch.setattr(scenario, "run_trial", lambda cfg: seen.append(("hook", str(cfg.method.variant)))
                        or {"test_mrr@5": 0.1})
    assert recipe("ctr").trial is None and train_trial(load_config(SWEEP_CONFIG, sweep_args(tmp_path))) == {"auc": 0.7}
    assert recipe("stackrec").trial == "distrec.methods.stackrec.scenario:run_trial"
    assert train_trial(load_config("configs/stackrec/smoke.yaml", ["method.variant=cross"])) == {"test_mrr@5": 0.1}
    assert seen == [("train", "ctr"), ("hook", "cross")]


# --- (a) result statistics against numpy / scipy -----------------------------------------------------


def test_mean_std_and_paired_difference_match_numpy_and_scipy():
    values = [0.71, 0.74, 0.69, 0.75]
    mean, std = mean_std(values)
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))
    assert math.isnan(mean_std([0.5])[1])

    point = {0: 0.712, 1: 0.731, 2: 0.705, 3: 0.744, 9: 0.8}  # seed 9 has no baseline pair
    base = {0: 0.701, 1: 0.722, 2: 0.709, 3: 0.730}
    d = paired_difference(point, base)
    a, b = np.array([point[s] for s in range(4)]), np.array([base[s] for s in range(4)])
    ref = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert d.n == 4 and d.mean == pytest.approx(np.mean(a - b))
    assert d.se == pytest.approx(np.std(a - b, ddof=1) / 2) and d.se == pytest.approx(stats.sem(a - b))
    assert (d.ci_low, d.ci_high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    one = paired_difference({0: 0.7}, {0: 0.6})
    assert one.n == 1 and one.mean == pytest.approx(0.1) and math.isnan(one.ci_low)


def test_results_files_from_trial_records(tmp_path):
    trials = [Trial(trial_id(p, s), p, s) for p in ({"x": 1}, {"x": 2}) for s in (0, 1, 2)]
    auc = {(1, 0): 0.70, (1, 1): 0.72, (1, 2): 0.71, (2, 0): 0.74, (2, 1): 0.73, (2, 2): 0.79}
    records = {t.id: {"status": FINISHED, "metrics": {"auc": auc[t.point["x"], t.seed], "step": 4, "ok": True}}
               for t in trials}
    records[trials[-1].id]["status"] = STOPPED_EARLY  # listed, but not in the statistics
    summaries = summarize(trials, records, "auc", baseline_index=0)
    assert [s.n for s in summaries] == [3, 2] and summaries[1].stopped == 1
    assert summaries[1].stats["auc"][0] == pytest.approx(0.735)
    assert summaries[1].vs_baseline.n == 2 and summaries[1].vs_baseline.mean == pytest.approx(0.025)

    paths, _ = write_results(str(tmp_path / "sweep"), "demo", trials, records, "auc", "max", 0)
    saved = json.loads(Path(paths["results.json"]).read_text())
    assert len(saved["trials"]) == 6 and saved["baseline"] == "x=1" and saved["unfinished"] == []
    assert saved["points"][1]["vs_baseline"]["n"] == 2 and "ok" not in saved["points"][0]["mean_std"]
    md = Path(paths["results.md"]).read_text()
    assert "| x=1 (baseline) | 3 | 0 | 0.71 ± 0.01 | 4 ± 0 |" in md
    assert "| x=2 | 2 | 1 | 0.735 ± 0.0071 | 4 ± 0 |" in md
    assert "| x=2 | 2 | +0.025 ± 0.015 | [-0.1656, +0.2156] |" in md  # t(0.975, 1 df) = 12.71
    assert Path(paths["results.png"]).read_bytes()[:4] == b"\x89PNG"
    assert not list((tmp_path / "sweep").glob("*.tmp-*"))


def test_trial_records_and_results_on_s3(s3_bucket, s3_server, monkeypatch):
    import fsspec

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    sweep_dir = f"{s3_bucket}/sweeps/demo"
    trials = [Trial(trial_id({"x": x}, 0), {"x": x}, 0) for x in (1, 2)]
    run_dirs = {t.id: f"{sweep_dir}/{t.id}" for t in trials}
    configs = {t.id: {"x": t.point["x"]} for t in trials}
    write_trial_record(run_dirs[trials[0].id], configs[trials[0].id], trials[0], FINISHED, {"auc": 0.7})
    write_trial_record(run_dirs[trials[1].id], {"x": "another config"}, trials[1], FINISHED, {"auc": 0.9})
    records = collect_records(trials, configs, run_dirs)
    assert list(records) == [trials[0].id]  # a record written for another config is not this trial's

    paths, _ = write_results(sweep_dir, "demo", trials, records, "auc", "max", 0)
    fs, _ = fsspec.core.url_to_fs(sweep_dir, client_kwargs={"endpoint_url": s3_server})
    saved = json.loads(fs.cat_file(paths["results.json"]))
    assert [t["id"] for t in saved["trials"]] == [trials[0].id] and saved["unfinished"] == [trials[1].id]
    assert fs.cat_file(paths["results.png"])[:4] == b"\x89PNG"
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(sweep_dir)) == sorted([*RESULT_FILES, *run_dirs])


# --- (d) a bad sweep key or value fails before Ray starts -------------------------------------------


def test_bad_sweep_key_is_a_config_error_before_ray_starts(tmp_path, monkeypatch, capsys):
    import distrec.train.launcher

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray must not start for an invalid sweep")

    monkeypatch.setattr(distrec.train.launcher, "ensure_ray", no_ray)
    with pytest.raises(ConfigError, match=r"unknown config key 'trainer.num_wokers' in sweep.grid .*num_workers"):
        load_config(SWEEP_CONFIG, ["sweep.grid.trainer.num_wokers=[1]"])
    assert main(["sweep", SWEEP_CONFIG, *sweep_args(tmp_path, "sweep.grid.trainer.num_wokers=[1]")]) == 2
    assert "trainer.num_wokers" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"invalid value 'two' for config key 'model.cross_layers'"):
        plan_sweep(load_config(SWEEP_CONFIG, ["sweep.grid.model.cross_layers=[1,two]"]))
    assert main(["sweep", SWEEP_CONFIG, *sweep_args(tmp_path, "sweep.grid.dense.lr=0.1")]) == 2
    assert "sweep.grid.dense.lr" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# --- (b) and (c): real sweeps on the shared Ray cluster ---------------------------------------------


def result_table_rows(markdown: str) -> list[list[str]]:
    """Rows of the first table of results.md (per point)."""
    table = markdown.split("\n\n| point | n |", 1)[1].split("\n\n", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def evaluated_steps(run_dir) -> list[int]:
    """Steps of the run's evaluations in metrics.jsonl (not its final summary line, if any)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in records if "auc" in r and "epoch_rows" not in r]


@pytest.mark.ray
def test_grid_times_seeds_sweep_resumes_without_rerunning_finished_trials(tmp_path, ray_cluster, capsys):
    """A 2x2 grid x 2 seeds. One trial's worker dies at step 3 (the trainer.fail_at_step drill, no
    Ray Train retries; it fires once per run directory, so the other seven get its marker up front):
    the sweep ends with 7 results. The rerun restores the Tune experiment, leaves the finished trials
    alone and continues the failed one from its step-2 checkpoint."""
    args = ["sweep", SWEEP_CONFIG, *sweep_args(tmp_path, "trainer.fail_at_step=3", "trainer.checkpoint_every=2")]
    sweep_dir = tmp_path / "runs" / "ctr-sweep-smoke"
    trials = expand_trials(load_config(SWEEP_CONFIG, args[2:]))
    failing = sweep_dir / trials[5].id
    for trial in trials:
        if trial is not trials[5]:
            (sweep_dir / trial.id).mkdir(parents=True)
            (sweep_dir / trial.id / ".failed-at-step-3").write_text("drill disarmed")

    assert main(args) == 1
    printed = capsys.readouterr().out
    assert f"1 trial(s) failed: {failing.name}" in printed and "7 of 8 trials have results" in printed
    first = json.loads((sweep_dir / "results.json").read_text())
    assert len(first["trials"]) == 7 and first["unfinished"] == [failing.name]
    assert not (failing / "trial.json").exists() and (failing / ".failed-at-step-3").read_text() == "injected"
    assert sorted(r[1] for r in result_table_rows((sweep_dir / "results.md").read_text())) == ["1", "2", "2", "2"]
    finished = [sweep_dir / t.id for t in trials if t is not trials[5]]
    untouched = {p: p.stat().st_mtime_ns for d in finished for p in d.rglob("*") if p.is_file()}

    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for d in finished for p in d.rglob("*") if p.is_file()} == untouched
    assert len(list(sweep_dir.glob("tune-*"))) == 1  # the same Tune experiment, restored
    # continued from the step-2 checkpoint: step 2 was evaluated once, by the first attempt
    assert evaluated_steps(failing) == [2, 4, 6]

    results = json.loads((sweep_dir / "results.json").read_text())
    assert len(results["trials"]) == 8 and results["unfinished"] == []
    keys = {(t["overrides"]["dense.lr"], t["overrides"]["model.cross_layers"], t["seed"]) for t in results["trials"]}
    assert keys == {(lr, c, s) for lr in (0.001, 0.01) for c in (1, 2) for s in (0, 1)}
    for t in results["trials"]:
        assert t["status"] == "finished" and 0.0 < t["metrics"]["auc"] <= 1.0
        assert evaluated_steps(sweep_dir / t["id"])[-1] == 6
        saved = yaml.safe_load((sweep_dir / t["id"] / "config.yaml").read_text())
        assert saved["run"]["seed"] == t["seed"] and saved["dense"]["lr"] == t["overrides"]["dense.lr"]
        assert saved["model"]["cross_layers"] == t["overrides"]["model.cross_layers"]
    rows = result_table_rows((sweep_dir / "results.md").read_text())
    assert len(rows) == 4 and [r[1] for r in rows] == ["2"] * 4 and "(baseline)" in rows[0][0]
    assert (sweep_dir / "results.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "8 of 8 trials have results" in printed and str(sweep_dir / "results.md") in printed

    (sweep_dir / "results.md").unlink()  # --no-run rebuilds the results from the trials' records
    assert main([*args, "--no-run"]) == 0
    assert len(result_table_rows((sweep_dir / "results.md").read_text())) == 4
