"""Chain-of-thought prompt files for the teacher: YAML with ``system`` and ``template``."""

from __future__ import annotations

import string
from dataclasses import dataclass

import yaml

from distrec.errors import ConfigError


@dataclass(frozen=True)
class PromptTemplate:
    system: str
    template: str
    source: str

    def render(self, fields: dict) -> str:
        try:
            return self.template.format(**fields)
        except KeyError as exc:
            raise ConfigError(
                f"prompt file {self.source}: placeholder {{{exc.args[0]}}} is not a field of this "
                f"entity; available: {sorted(fields)}"
            ) from None


def load_prompt(path: str) -> PromptTemplate:
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"prompt file not found: {path} (method.knowledge.prompts)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in prompt file {path}: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("template"), str):
        raise ConfigError(f"prompt file {path} must be a mapping with a 'template' string "
                          f"(and optionally 'system')")
    unknown = set(raw) - {"system", "template"}
    if unknown:
        raise ConfigError(f"prompt file {path}: unknown key(s) {sorted(unknown)}; expected system, template")
    for _, name, _, _ in string.Formatter().parse(raw["template"]):
        if name is not None and not name.isidentifier():
            raise ConfigError(f"prompt file {path}: placeholder {{{name}}} must be a plain field name")
    return PromptTemplate(str(raw.get("system") or ""), raw["template"], path)


def load_prompts(prompts_cfg) -> dict[str, PromptTemplate]:
    return {"item": load_prompt(prompts_cfg.item), "user": load_prompt(prompts_cfg.user)}
