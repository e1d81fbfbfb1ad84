"""The MSD report's variants, by name: each a set of config overrides.

``method.report.variant`` names one (None: the config as written); ``prepare_data`` and the
training worker apply it, so ``distrec run CONFIG method.report.variant=msd-metadata-no_lora``
trains exactly what that trial of the report's sweep (``sweep.grid: {method.report.variant:
[...]}``) trains.

  base                         the CTR model without semantics
  msd-<teacher>                MSD with the student distilled from ``method.report.knowledge[teacher]``
                               (into ``<method.report.output>/students/<teacher>``)
  msd-<teacher>-<ablation>     the same with one ablation switched (``method.report.ablations``,
                               for ``method.report.ablations_teacher``)
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from distrec.config.load import nest_dotted
from distrec.errors import ConfigError
from distrec.methods.msd.config import Ablation

ABLATIONS = {
    Ablation.no_lora: {"method.semantics.lora": False},
    Ablation.no_item_fusion: {"method.semantics.item_fusion": False},
    Ablation.no_user_knowledge: {"method.semantics.user_knowledge": False},
    Ablation.no_semantics: {"method.semantics.enabled": False},
}
BASE = "base"


def student_dir(cfg, teacher: str) -> str:
    return os.path.join(cfg.method.report.output, "students", teacher)


def teacher_overrides(cfg, teacher: str) -> dict:
    """The teacher's knowledge in, its own student out (distilled once, shared by its variants)."""
    return {"method.knowledge.output": cfg.method.report.knowledge[teacher],
            "method.distill.output": student_dir(cfg, teacher), "method.semantics.student": None}


def variants(cfg) -> dict[str, dict]:
    """name -> overrides of every variant the config's ``method.report`` defines."""
    rep = cfg.method.report
    if not rep.knowledge:
        raise ConfigError("method.report.knowledge is empty: map each teacher name to the knowledge "
                          "directory `distrec msd knowledge` wrote, e.g. {metadata: runs/k-meta}")
    if rep.ablations_teacher not in rep.knowledge:
        raise ConfigError(f"method.report.ablations_teacher={rep.ablations_teacher!r} is not a key of "
                          f"method.report.knowledge ({sorted(rep.knowledge)})")
    out = {BASE: {"method.semantics.enabled": False}}
    for teacher in rep.knowledge:
        out[f"msd-{teacher}"] = teacher_overrides(cfg, teacher)
    for ablation in rep.ablations:
        out[f"msd-{rep.ablations_teacher}-{ablation}"] = {**teacher_overrides(cfg, rep.ablations_teacher),
                                                         **ABLATIONS[ablation]}
    return out


def variant_teacher(cfg, name: str) -> str | None:
    """The teacher whose student ``name`` uses (None for the base model)."""
    overrides = variants(cfg)[name]
    if not overrides.get("method.semantics.enabled", True):
        return None
    return next(t for t in cfg.method.report.knowledge if student_dir(cfg, t) == overrides["method.distill.output"])


def with_variant(cfg):
    """``cfg`` with ``method.report.variant``'s overrides applied (a copy), or ``cfg`` itself."""
    name = cfg.method.report.variant
    if name is None:
        return cfg
    found = variants(cfg)
    if name not in found:
        raise ConfigError(f"method.report.variant={name!r} is not a variant of this config; known: {list(found)}")
    out = OmegaConf.merge(cfg, *(nest_dotted(key, value) for key, value in found[name].items()))
    out.method.report.variant = None  # applied
    return out
