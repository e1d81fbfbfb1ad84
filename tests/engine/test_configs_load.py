"""Every shipped config loads, validates against its recipe's typed schema and resolves; the
shared base.yaml files are only loadable with a preset's data paths, and say so by name."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from distrec.errors import ConfigError
from distrec.methods import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PRESETS = sorted(p for p in CONFIGS.rglob("*.yaml")
                 if not {"prompts", "schemas", "data"} & set(p.relative_to(CONFIGS).parts) and p.name != "base.yaml")


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_preset_loads_and_resolves(path):
    cfg = load_config(str(path))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["run"]["recipe"] == path.parent.name  # configs/<recipe>/<preset>.yaml
    assert resolved["data"]["train"]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*/base.yaml")), ids=lambda p: p.parent.name)
def test_base_configs_need_a_presets_data(path):
    with pytest.raises(ConfigError, match=r"data\.schema"):
        OmegaConf.to_container(load_config(str(path)), resolve=True)
