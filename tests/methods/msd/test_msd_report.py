"""The MSD report's variants (base, one MSD per teacher, ablations) and its seed statistics."""

import statistics

import pytest

from distrec.errors import ConfigError
from distrec.methods import load_config
from distrec.methods.msd.report import summarise, variants


def test_variants_cover_base_each_teacher_and_each_ablation():
    cfg = load_config("configs/msd/ml-100k.yaml", ["method.report.output=/r"])
    found = variants(cfg)
    assert found["base"] == {"method.semantics.enabled": False}
    assert found["msd[smollm2]"]["method.semantics.student"] == "/r/students/smollm2"
    assert found["msd[metadata] no_lora"] == {"method.semantics.student": "/r/students/metadata",
                                              "method.semantics.lora": False}
    assert {"msd[metadata] no_item_fusion", "msd[metadata] no_user_knowledge"} <= set(found)
    with pytest.raises(ConfigError, match="ablations_teacher"):
        variants(load_config("configs/msd/ml-100k.yaml", ["method.report.ablations_teacher=gpt"]))


def test_summary_is_mean_and_sample_std_over_seeds():
    runs = {"base": [{"auc": 0.7, "gauc": 0.6, "logloss": 0.5}, {"auc": 0.72, "gauc": 0.61, "logloss": 0.49}]}
    row = summarise(runs)["base"]
    assert row["seeds"] == 2
    assert row["auc"] == pytest.approx(0.71) and row["auc_std"] == pytest.approx(statistics.stdev([0.7, 0.72]))


def test_a_rerun_reuses_finished_runs_of_the_same_config_only(tmp_path, monkeypatch):
    from distrec.methods.msd import report

    trained = []
    monkeypatch.setattr(report, "_run", lambda cfg, local, distill: trained.append(cfg.run.seed) or
                        {"auc": 0.6 + cfg.run.seed / 100, "logloss": 0.5, "samples_per_s": 1.0})
    cfg = load_config("configs/msd/ml-100k.yaml", [f"run.output_dir={tmp_path}", "run.name=r"])
    (tmp_path / "r").mkdir()
    assert report._finished_or_run(cfg, "base", 0, True) == {"auc": 0.6, "logloss": 0.5}
    assert report._finished_or_run(cfg, "base", 0, True) == {"auc": 0.6, "logloss": 0.5}
    assert trained == [0]  # the second call read report_result.json
    other = load_config("configs/msd/ml-100k.yaml", [f"run.output_dir={tmp_path}", "run.name=r", "run.seed=3"])
    assert report._finished_or_run(other, "base", 3, True)["auc"] == pytest.approx(0.63)
    assert trained == [0, 3]  # a changed config trains again


def test_report_files_table_and_plot(tmp_path):
    from distrec.methods.msd.report import _write

    cfg = load_config("configs/msd/ml-100k.yaml", [f"method.report.output={tmp_path}"])
    runs = {"base": [{"auc": 0.70, "gauc": 0.66, "logloss": 0.60}, {"auc": 0.71, "gauc": 0.67, "logloss": 0.59}],
            "msd[metadata]": [{"auc": 0.72, "gauc": 0.68, "logloss": 0.58}]}
    paths = _write(cfg, runs, {"metadata": {"distill_loss_before": 1.0, "distill_loss_after": 0.2, "steps": 3}})
    text = (tmp_path / "report.md").read_text()
    assert "| base | 0.7050 ± 0.0071 |" in text and "| msd[metadata] | 0.7200 ± 0.0000 |" in text
    assert "| metadata | 1.0000 | 0.2000 | 3 |" in text
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG" and paths["png"].endswith("report.png")


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
