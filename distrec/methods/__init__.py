"""The method registry: one ``Recipe`` record per method, the only list of methods there is.

A method lives in ``distrec/methods/<name>/``: ``config.py`` (its typed ``model``/``method`` config
sections), ``recipe.py`` (``build_model`` and ``train_worker``, which runs ``distrec.train.loop``),
and, when it has commands of its own, ``cli.py`` (``register(subparsers)``); its record here names
its data hook, importers and sweep trial. Modules are named as strings and imported on use, so
``distrec --help`` does not load torch or any method.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Iterable

from distrec.config.load import load_config_sections
from distrec.config.schema import NoMethodConfig
from distrec.errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    has_cli: bool = True
    # "module:function" making the data a config names exist (generated or imported), if the
    # method has data of its own; run on the driver before any worker starts
    prepare: str | None = None
    # extra ``distrec data import`` formats: name -> "module:function"
    importers: dict[str, str] = field(default_factory=dict)
    # "module:function" computing one ``distrec sweep`` trial when a trial is more than one
    # ``distrec run`` (``function(trial_cfg) -> final metrics``); None: the trial is ``train``
    trial: str | None = None

    @property
    def package(self) -> str:
        return f"distrec.methods.{self.name}"

    @property
    def worker_entry(self) -> str:
        """What every training worker calls, as "module:function" (``function(cfg, in_ray)``)."""
        return f"{self.package}.recipe:train_worker"

    @property
    def eval_entry(self) -> str:
        """What every ``distrec eval`` worker calls (``function(cfg, in_ray)``)."""
        return f"{self.package}.recipe:eval_worker"

    def module(self):
        return importlib.import_module(f"{self.package}.recipe")

    def config_sections(self) -> dict[str, type]:
        config = importlib.import_module(f"{self.package}.config")
        return {"model": config.ModelConfig, "method": getattr(config, "MethodConfig", NoMethodConfig)}

    def build_model(self, cfg, schema):
        return self.module().build_model(cfg, schema)

    def prepare_data(self, cfg) -> None:
        if self.prepare:
            _function(self.prepare)(cfg)

    def train_trial(self, cfg) -> dict:
        return _function(self.trial)(cfg) if self.trial else train(cfg)

    def register_cli(self, subparsers) -> None:
        if self.has_cli:
            importlib.import_module(f"{self.package}.cli").register(subparsers)


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("ctr", "CTR prediction: DCN-v2 / DeepFM / DLRM on sharded tables", has_cli=False),
    Recipe("egean", "post-click CVR over the exposure space (EGEAN, ESMM, ESCM²)",
           prepare="distrec.methods.egean.ground_truth:prepare_data"),
    Recipe("msd", "LLM knowledge distilled into a CTR model", prepare="distrec.methods.msd.data:prepare_data"),
    Recipe("stackrec", "deep sequential recommenders trained by progressive stacking",
           prepare="distrec.methods.stackrec.synthetic:ensure_data",
           trial="distrec.methods.stackrec.scenario:run_trial"),
    Recipe("conure", "continual user representations over tasks, by pruning",
           prepare="distrec.methods.conure.tasks:prepare_tasks", importers={
        "conure_recbole": "distrec.methods.conure.importers.recbole:import_conure_recbole",
        "conure_ml100k": "distrec.methods.conure.importers.recbole:import_conure_recbole",  # earlier name
        "conure_ttl": "distrec.methods.conure.importers.ttl:import_conure_ttl",
    }),
)}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"run.recipe: unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def load_config(path: str, overrides: Iterable[str] = ()):
    """Load and validate a config, its ``model``/``method`` sections typed by its recipe."""
    return load_config_sections(path, overrides, lambda name: recipe(name).config_sections())


def prepare_data(cfg) -> None:
    """The same for every method: the recipe's own data, then the engine's synthetic splits."""
    from distrec.data.prepare import write_synthetic_splits

    recipe(cfg.run.recipe).prepare_data(cfg)
    write_synthetic_splits(cfg)


def train(cfg) -> dict:
    """``distrec run``: prepare the data, then train on Ray Train workers; the final metrics."""
    from distrec.train.launcher import run_training

    prepare_data(cfg)
    return run_training(cfg, recipe(cfg.run.recipe).worker_entry)


def evaluate(cfg, checkpoint: str, split: str = "test") -> dict:
    """``distrec eval``: the metrics of ``checkpoint`` (a checkpoint, or a run directory: its best
    weights, else its latest) on ``split`` (test, valid or a Parquet path), on Ray Train workers
    like training; the result is in ``<run_dir>/eval/<split>-<checkpoint name>/summary.json``."""
    import posixpath

    from distrec.train.evaluation import resolve_checkpoint, split_label
    from distrec.train.launcher import run_training

    if cfg.run.recipe == "conure":
        raise ConfigError("conure: evaluate a task with `distrec conure eval CONFIG --task K` (each task "
                          "has its own head, masks and data)")
    found = resolve_checkpoint(checkpoint, cfg.data.s3_endpoint_url)
    cfg = cfg.copy()
    cfg.evaluation.checkpoint, cfg.evaluation.split = found, split
    cfg.run.name = posixpath.join(cfg.run.name, "eval", f"{split_label(split)}-{posixpath.basename(found.rstrip('/'))}")
    cfg.run.resume = False
    return run_training(cfg, recipe(cfg.run.recipe).eval_entry)


def train_trial(cfg) -> dict:
    """One ``distrec sweep`` trial: the recipe's trial hook when it has one, else ``train(cfg)``."""
    return recipe(cfg.run.recipe).train_trial(cfg)


def _function(target: str) -> Callable:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def importers() -> dict[str, Callable]:
    """Every ``distrec data import`` format: the engine's importers and the methods' own."""
    from distrec.data.importers import IMPORTERS

    found = dict(IMPORTERS)
    for r in RECIPES.values():
        found.update((name, _function(target)) for name, target in r.importers.items())
    return found


def run_sweep(cfg, address: str | None = None, run: bool = True):
    """``distrec sweep``: the config's sweep, each trial a recipe's trial hook or ``distrec run``."""
    from distrec.experiments.sweep import TrialRunner
    from distrec.experiments.sweep import run_sweep as run_trials

    return run_trials(cfg, TrialRunner(prepare_data, train_trial), address=address, run=run)
