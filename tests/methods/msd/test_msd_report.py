"""The MSD report: its variants (base, one MSD per teacher, ablations) as a sweep over
method.report.variant x seeds, the tables built from the sweep's results.json, and the report run
as a sweep on the shared Ray cluster (each student distilled once, a rerun trains nothing)."""

import json

import numpy as np
import pytest
from scipy import stats

from distrec.errors import ConfigError
from distrec.experiments.sweep import plan_sweep
from distrec.methods import load_config
from distrec.methods.msd.report import (
    build_report,
    markdown,
    metrics_png,
    swept_variants,
)
from distrec.methods.msd.variants import variant_teacher, variants, with_variant


def test_variants_cover_base_each_teacher_and_each_ablation():
    cfg = load_config("configs/msd/ml-100k.yaml", ["method.report.output=/r"])
    found = variants(cfg)
    assert found["base"] == {"method.semantics.enabled": False}
    assert found["msd-smollm2"] == {"method.knowledge.output": "benchmarks/results/msd_knowledge_smollm2",
                                    "method.distill.output": "/r/students/smollm2", "method.semantics.student": None}
    assert found["msd-metadata-no_lora"] == {**found["msd-metadata"], "method.semantics.lora": False}
    assert {"msd-metadata-no_item_fusion", "msd-metadata-no_user_knowledge"} <= set(found)
    assert [variant_teacher(cfg, n) for n in ("base", "msd-smollm2", "msd-metadata-no_lora")] == \
        [None, "smollm2", "metadata"]
    with pytest.raises(ConfigError, match="ablations_teacher"):
        variants(load_config("configs/msd/ml-100k.yaml", ["method.report.ablations_teacher=gpt"]))


def test_a_trial_of_the_report_sweep_is_its_variant_applied_to_the_config():
    cfg = load_config("configs/msd/ml-100k.yaml", ["method.report.output=/r"])
    assert swept_variants(cfg) == list(cfg.sweep.grid["method.report.variant"]) and len(cfg.sweep.seeds) >= 3
    plan = plan_sweep(cfg)
    assert len(plan.trials) == 6 * 3 and plan.trials[plan.baseline_index].point == {"method.report.variant": "base"}
    trial = next(t for t in plan.trials if t.point["method.report.variant"] == "msd-metadata-no_lora" and t.seed == 2)
    applied = with_variant(plan.configs[trial.id])
    assert applied.method.semantics.lora is False and applied.method.semantics.enabled is True
    assert applied.method.distill.output == "/r/students/metadata" and applied.run.seed == 2
    assert applied.method.knowledge.output == "runs/msd-ml-100k/knowledge-metadata"
    assert applied.method.report.variant is None and with_variant(applied) is applied
    assert with_variant(plan.configs[plan.trials[0].id]).method.semantics.enabled is False
    with pytest.raises(ConfigError, match="not a variant of this config"):
        with_variant(load_config("configs/msd/ml-100k.yaml", ["method.report.variant=msd-gpt"]))
    with pytest.raises(ConfigError, match=r"\['msd-gpt'\] are not variants"):
        swept_variants(load_config("configs/msd/ml-100k.yaml", ["sweep.grid.method.report.variant=[base,msd-gpt]"]))
    with pytest.raises(ConfigError, match="sweeps method.report.variant alone"):
        swept_variants(load_config("configs/msd/ml-100k.yaml", ["sweep.grid.dense.lr=[0.1]"]))


def test_tables_are_mean_std_over_seeds_and_differences_paired_with_base(tmp_path):
    cfg = load_config("configs/msd/ml-100k.yaml", ["sweep.grid.method.report.variant=[base,msd-metadata]"])
    auc = {"base": [0.70, 0.71, 0.69], "msd-metadata": [0.72, 0.725, 0.70]}
    trials = [{"id": f"{v}-{s}", "overrides": {"method.report.variant": v}, "seed": s, "status": "finished",
               "metrics": {"auc": auc[v][s], "gauc": 0.6, "logloss": 0.5 - s / 100, "rare_items_auc": 0.55,
                           "rare_items_logloss": 0.6}} for v in auc for s in range(3)]
    report = build_report(cfg, {"trials": trials, "unfinished": []},
                          {"metadata": {"distill_loss_before": 1.0, "distill_loss_after": 0.2, "steps": 3}})
    base, msd = report["variants"]["base"], report["variants"]["msd-metadata"]
    assert base["seeds"] == [0, 1, 2] and base["auc"] == pytest.approx(0.70)
    assert msd["auc_std"] == pytest.approx(np.std(auc["msd-metadata"], ddof=1))
    diff = np.array(auc["msd-metadata"]) - np.array(auc["base"])
    ci = stats.ttest_rel(auc["msd-metadata"], auc["base"]).confidence_interval(0.95)
    d = msd["auc_vs_base"]
    assert d["n"] == 3 and d["mean"] == pytest.approx(diff.mean()) and d["se"] == pytest.approx(stats.sem(diff))
    assert (d["ci_low"], d["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert msd["logloss_vs_base"]["mean"] == pytest.approx(0.0) and "auc_vs_base" not in base
    text = markdown(report, cfg)
    assert "| base | 3 | 0.7000 ± 0.0100 | 0.6000 ± 0.0000 |" in text
    assert f"| msd-metadata | 3 | {diff.mean():+.4f} ± {stats.sem(diff):.4f} [{ci.low:+.4f}, {ci.high:+.4f}] |" in text
    assert "| metadata | 1.0000 | 0.2000 | 3 |" in text
    assert metrics_png(report["variants"])[:4] == b"\x89PNG"


@pytest.mark.ray
@pytest.mark.timeout(900)
def test_report_is_a_sweep_that_distils_each_student_once_and_a_rerun_trains_nothing(tmp_path, shared_data,
                                                                                      ray_cluster, capsys):
    """base and MSD (metadata teacher) x seeds 0, 1 on a 30-user slice: the student is distilled on
    the driver before the four trials start (two at a time, one worker each)."""
    from test_msd_knowledge import slice_config

    from distrec.cli import main
    from distrec.methods.msd.data import ensure_imported
    from distrec.methods.msd.knowledge import run_knowledge_job

    data = tmp_path / "data"
    overrides = [
        f"data.train={data}/train", f"data.valid={data}/valid", f"data.schema={data}/schema.yaml",
        f"method.entities.items_path={data}/items.parquet", f"method.entities.users_path={data}/users.parquet",
        f"method.entities.sequences_path={data}/sequences", f"method.entities.import_from={shared_data}/ml-100k",
        "method.entities.import_max_users=30", f"method.knowledge.output={tmp_path}/knowledge",
        "method.knowledge.limit=60", f"run.output_dir={tmp_path}/runs", f"method.report.output={tmp_path}/report",
        f"method.report.knowledge.metadata={tmp_path}/knowledge", "method.report.ablations=[]",
        "method.distill.max_steps=4", "method.student.max_length=8", "method.distill.knowledge_max_length=32",
        "method.distill.batch_size=16", "method.semantics.cache_min_freq=2", "data.batch_size=32",
        "trainer.max_steps=6", "trainer.log_every=100", "trainer.num_workers=1", "trainer.cpus_per_worker=0.5",
        "sweep.name=msd-smoke-report", "sweep.grid.method.report.variant=[base,msd-metadata]", "sweep.seeds=[0,1]",
        "sweep.baseline.method.report.variant=base", "sweep.metric=auc", "sweep.max_concurrent=2", "sweep.poll_s=0.5",
    ]
    cfg = slice_config(tmp_path, shared_data, *overrides)
    ensure_imported(cfg)
    run_knowledge_job(cfg)  # the teacher's knowledge exists before the report (distrec msd knowledge)

    assert main(["msd", "report", "configs/msd/smoke.yaml", *overrides]) == 0
    student = tmp_path / "report" / "students" / "metadata"
    assert (student / "config.json").is_file()
    assert [p.name for p in (tmp_path / "runs").iterdir() if p.name.endswith("-distill")] == \
        ["msd-smoke-report-metadata-distill"]  # one distillation, on the driver
    sweep_dir = tmp_path / "runs" / "msd-smoke-report"
    trial_dirs = [sweep_dir / f"method.report.variant={v}_seed={s}" for v in ("base", "msd-metadata") for s in (0, 1)]
    for trial_dir in trial_dirs:
        record = json.loads((trial_dir / "trial.json").read_text())
        assert record["status"] == "finished" and 0.0 <= record["metrics"]["auc"] <= 1.0
        assert "rare_items_auc" in record["metrics"]
    report = json.loads((sweep_dir / "report.json").read_text())
    assert report["variants"]["msd-metadata"]["seeds"] == [0, 1]
    assert report["variants"]["msd-metadata"]["auc_vs_base"]["n"] == 2 and "metadata" in report["distillation"]
    text = (sweep_dir / "report.md").read_text()
    assert "| base | 2 |" in text and "| msd-metadata | 2 |" in text and "Δ AUC, rare items" in text
    assert (sweep_dir / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert (sweep_dir / "results.md").is_file()

    trained = {p: p.stat().st_mtime_ns for d in [*trial_dirs, student] for p in d.rglob("*") if p.is_file()}
    (sweep_dir / "report.md").unlink()
    assert main(["msd", "report", "configs/msd/smoke.yaml", *overrides]) == 0  # the rerun: nothing trains
    assert {p: p.stat().st_mtime_ns for d in [*trial_dirs, student] for p in d.rglob("*") if p.is_file()} == trained
    assert "| msd-metadata | 2 |" in (sweep_dir / "report.md").read_text()


def test_rare_item_metrics_cover_exactly_the_rows_of_rare_items(tmp_path, shared_data):
    """The recipe's evaluation on an ml-100k slice (base model, one gloo process): the rare-item AUC
    and LogLoss equal a direct computation over the validation rows whose item is rare in training."""
    import numpy as np
    import pyarrow.parquet as pq
    from msd_workers import evaluate_untrained
    from omegaconf import OmegaConf
    from sklearn.metrics import log_loss, roc_auc_score
    from test_msd_knowledge import slice_config

    from distrec.data.schema import FeatureSchema
    from distrec.methods.msd.data import ensure_imported
    from distrec.methods.msd.entities import id_frequencies
    from distrec.train.local_spawn import spawn

    cfg = slice_config(tmp_path, shared_data, "method.semantics.enabled=false", "trainer.num_workers=1",
                       "method.semantics.cache_min_freq=4", "dense.backend=ddp")
    ensure_imported(cfg)
    out = spawn(evaluate_untrained, 1, OmegaConf.to_container(cfg, resolve=True))[0]
    metrics, p, items = out["metrics"], np.array(out["preds"], dtype=np.float64), np.array(out["items"])

    valid = pq.read_table(cfg.data.valid, columns=["item_id", "click"]).to_pandas()
    assert items.tolist() == valid["item_id"].tolist()  # one prediction per validation row, in order
    schema = FeatureSchema.load(cfg.data.schema)
    rare = id_frequencies(cfg.data.train, "item_id", schema.field("item_id").num_embeddings)[items] < 4
    assert 0 < rare.sum() < len(rare) and metrics["rare_items_num_rows"] == int(rare.sum())
    labels = valid["click"].to_numpy()
    assert metrics["rare_items_auc"] == pytest.approx(roc_auc_score(labels[rare], p[rare]), abs=1e-6)
    assert metrics["rare_items_logloss"] == pytest.approx(log_loss(labels[rare], np.clip(p[rare], 1e-7, 1 - 1e-7)),
                                                          abs=1e-4)
    assert metrics["num_rows"] == len(items)
