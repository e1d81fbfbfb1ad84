"""Recipes: one module per training procedure, each exposing ``train_worker(cfg, in_ray)``."""

from __future__ import annotations

import importlib

RECIPES = {
    "ctr": "distrec.recipes.ctr",
    "egean": "distrec.recipes.egean",
    "msd": "distrec.recipes.msd",
    "stackrec": "distrec.recipes.stackrec",
    "conure": "distrec.recipes.conure",
}


def recipe_module(name: str):
    if name not in RECIPES:
        from distrec.errors import ConfigError

        raise ConfigError(f"run.recipe: unknown recipe '{name}'; known recipes: {sorted(RECIPES)}")
    return importlib.import_module(RECIPES[name])
