"""The package layering (pyproject's [tool.importlinter] contracts) and the method registry."""

import subprocess
import sys
from pathlib import Path

from distrec.methods import RECIPES, recipe

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_method_is_one_folder_with_the_recipe_contract():
    methods_dir = REPO / "distrec" / "methods"
    folders = {p.name for p in methods_dir.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(RECIPES)
    for name, r in RECIPES.items():
        module = r.module()
        assert callable(module.build_model) and callable(module.train_worker), name
        sections = r.config_sections()
        assert set(sections) == {"model", "method"}, name
        assert (methods_dir / name / "cli.py").exists() == r.has_cli, name


def test_unknown_recipe_names_the_known_ones():
    import pytest

    from distrec.errors import ConfigError

    with pytest.raises(ConfigError, match=r"run.recipe: unknown recipe 'dcn'; known recipes: ctr, egean"):
        recipe("dcn")
