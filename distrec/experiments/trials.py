"""A sweep's trials: (grid points x random points) x seeds, each the base config with its overrides.

A *point* is ``{dotted config key: value}`` (one value per swept key); a *trial* is a point run
with one seed. Trial ids are built from the overrides and the seed alone, so the same sweep
always gives the same ids (and folders), whatever order or machine it runs on.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import posixpath
import random
import re
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from distrec.config.load import (
    config_to_dict,
    nest_dotted,
    read_config_record,
    write_config_record,
)
from distrec.errors import ConfigError

TRIAL_RECORD = "trial.json"  # in the trial's run directory, written when the trial has its result
_SAFE = re.compile(r"[^A-Za-z0-9._+=-]")
_MAX_ID = 96
# Keys that may differ between a sweep and its rerun without changing what a trial computes.
_VOLATILE = (("trainer", "address"), ("run", "resume"))


@dataclass(frozen=True)
class Trial:
    id: str
    point: dict  # dotted config key -> value
    seed: int

    @property
    def label(self) -> str:
        return point_label(self.point)


def grid_points(grid: dict) -> list[dict]:
    """The cartesian product of ``{key: [values]}``, in the keys' order; ``[{}]`` for no keys."""
    keys = list(grid)
    for key in keys:
        if not grid[key]:
            raise ConfigError(f"sweep key '{key}' has no values")
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def random_points(space: dict, num_samples: int, seed: int) -> list[dict]:
    """``num_samples`` distinct points, each one value per key, drawn with ``random.Random(seed)``
    (all of them when the space is smaller); ``[{}]`` for no keys."""
    if not space:
        return [{}]
    if num_samples < 1:
        raise ConfigError(f"sweep.num_samples must be at least 1 with sweep.random set, got {num_samples}")
    keys = sorted(space)  # the draw must not depend on the order the keys were written in
    sizes = [len(space[k]) for k in keys]
    if 0 in sizes:
        raise ConfigError(f"sweep key '{keys[sizes.index(0)]}' has no values")
    picks = random.Random(seed).sample(range(math.prod(sizes)), min(num_samples, math.prod(sizes)))
    points = []
    for index in picks:  # mixed-radix digits of the index: one value per key
        point = {}
        for key, size in zip(reversed(keys), reversed(sizes)):
            index, digit = divmod(index, size)
            point[key] = space[key][digit]
        points.append({k: point[k] for k in keys})
    return points


def sweep_points(sweep) -> list[dict]:
    """Every grid point crossed with every random point."""
    grid = _plain(sweep.grid)
    randoms = random_points(_plain(sweep.random), sweep.num_samples, sweep.random_seed)
    return [{**g, **r} for g in grid_points(grid) for r in randoms]


def expand_trials(cfg: DictConfig) -> list[Trial]:
    """The sweep's trials, point by point, each point once per seed (``sweep.seeds``, else ``run.seed``)."""
    seeds = list(cfg.sweep.seeds) or [cfg.run.seed]
    trials = [Trial(trial_id(p, s), p, int(s)) for p in sweep_points(cfg.sweep) for s in seeds]
    ids = [t.id for t in trials]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"sweep: trial '{dup}' appears twice (a repeated seed or value?)")
    return trials


def baseline_point(points: list[dict], baseline: dict) -> int:
    """Index of the point that matches every ``baseline`` key (the first point when empty)."""
    if not baseline:
        return 0
    for i, point in enumerate(points):
        if all(k in point and point[k] == v for k, v in baseline.items()):
            return i
    raise ConfigError(f"sweep.baseline {baseline} matches no point of the sweep; points: "
                      + "; ".join(point_label(p) for p in points[:8]))


def point_label(point: dict) -> str:
    return ", ".join(f"{k}={_text(v)}" for k, v in point.items()) or "(base config)"


def trial_id(point: dict, seed: int) -> str:
    """Readable and stable: ``dense.lr=0.001_model.cross_layers=2_seed=0``; a short hash of the
    overrides is appended when the text had to be shortened or made safe for a path."""
    raw = "_".join([*(f"{k}={_text(v)}" for k, v in point.items()), f"seed={seed}"])
    safe = _SAFE.sub("-", raw)
    if safe == raw and len(raw) <= _MAX_ID:
        return raw
    digest = hashlib.sha1(json.dumps([point, seed], sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{safe[:_MAX_ID - 9]}-{digest}"


def sweep_dir(cfg: DictConfig) -> str:
    out = cfg.run.output_dir
    return posixpath.join(out if "://" in out else os.path.abspath(out), cfg.sweep.name)


def trial_config(base: DictConfig, trial: Trial) -> DictConfig:
    """``base`` with the trial's overrides, its seed, and its run directory ``<sweep dir>/<id>``
    (``run.name = <sweep name>/<id>``); values are type-checked as a config file's are."""
    cfg = copy.deepcopy(base)
    OmegaConf.set_struct(cfg, False)  # the keys were checked at load; dict-typed sections may gain keys
    for key, value in trial.point.items():
        try:
            cfg = OmegaConf.merge(cfg, nest_dotted(key, value))
        except OmegaConfBaseException as e:
            raise ConfigError(f"sweep trial {trial.id}: invalid value {value!r} for config key '{key}': "
                              f"{str(e).splitlines()[0]}") from None
    out = base.run.output_dir
    cfg = OmegaConf.merge(cfg, {"run": {"seed": trial.seed, "name": f"{base.sweep.name}/{trial.id}",
                                        "output_dir": out if "://" in out else os.path.abspath(out)}})
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"sweep trial {trial.id}: config key '{e.full_key}': {str(e).splitlines()[0]}") from None
    OmegaConf.set_struct(cfg, True)
    return cfg


def fingerprint(cfg: DictConfig) -> dict:
    """What decides a trial's result: its resolved config without the sweep settings, the Ray
    address and ``run.resume`` (a rerun may change those and still reuse the result)."""
    tree = config_to_dict(cfg)
    tree.pop("sweep", None)
    for section, key in _VOLATILE:
        tree.get(section, {}).pop(key, None)
    return tree


def trial_run_dir(cfg: DictConfig) -> str:
    return posixpath.join(cfg.run.output_dir, cfg.run.name)


def read_trial_record(run_dir: str, config: dict) -> dict | None:
    """The trial's stored result if it was computed for ``config`` (its fingerprint)."""
    return read_config_record(posixpath.join(run_dir, TRIAL_RECORD), config)


def write_trial_record(run_dir: str, config: dict, trial: Trial, status: str, metrics: dict) -> None:
    write_config_record(posixpath.join(run_dir, TRIAL_RECORD), config,
                        {"trial": trial.id, "overrides": trial.point, "seed": trial.seed,
                         "status": status, "metrics": metrics})


def _plain(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)
