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
