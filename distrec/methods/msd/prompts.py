"""Chain-of-thought prompt files for the teacher: YAML with ``system``, ``template`` and
``answer_prefix`` (text the answer starts with: the LLM continues it, and it is kept as the
start of the knowledge record, which steers a small model into the requested format)."""

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
    answer_prefix: str = ""

    def render(self, fields: dict) -> str:
        return self._format(self.template, fields)

    def prefix(self, fields: dict) -> str:
        return self._format(self.answer_prefix, fields)

    def _format(self, text: str, fields: dict) -> str:
        try:
            return text.format(**fields)
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
    unknown = set(raw) - {"system", "template", "answer_prefix"}
    if unknown:
        raise ConfigError(f"prompt file {path}: unknown key(s) {sorted(unknown)}; expected system, "
                          f"template, answer_prefix")
    for _, name, _, _ in string.Formatter().parse(raw["template"] + str(raw.get("answer_prefix") or "")):
        if name is not None and not name.isidentifier():
            raise ConfigError(f"prompt file {path}: placeholder {{{name}}} must be a plain field name")
    return PromptTemplate(str(raw.get("system") or ""), raw["template"], path,
                          str(raw.get("answer_prefix") or ""))


def load_prompts(prompts_cfg) -> dict[str, PromptTemplate]:
    return {"item": load_prompt(prompts_cfg.item), "user": load_prompt(prompts_cfg.user)}
