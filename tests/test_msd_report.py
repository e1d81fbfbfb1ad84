"""The MSD report's variants (base, one MSD per teacher, ablations) and its seed statistics."""

import statistics

import pytest

from distrec.config.load import load_config
from distrec.errors import ConfigError
from distrec.msd.report import summarise, variants


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
    from distrec.msd import report

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
    from distrec.msd.report import _write

    cfg = load_config("configs/msd/ml-100k.yaml", [f"method.report.output={tmp_path}"])
    runs = {"base": [{"auc": 0.70, "gauc": 0.66, "logloss": 0.60}, {"auc": 0.71, "gauc": 0.67, "logloss": 0.59}],
            "msd[metadata]": [{"auc": 0.72, "gauc": 0.68, "logloss": 0.58}]}
    paths = _write(cfg, runs, {"metadata": {"distill_loss_before": 1.0, "distill_loss_after": 0.2, "steps": 3}})
    text = (tmp_path / "report.md").read_text()
    assert "| base | 0.7050 ± 0.0071 |" in text and "| msd[metadata] | 0.7200 ± 0.0000 |" in text
    assert "| metadata | 1.0000 | 0.2000 | 3 |" in text
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG" and paths["png"].endswith("report.png")
