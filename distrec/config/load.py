"""Load a run config: YAML files composed via ``defaults``, ``key=value`` overrides, typed checks.

Every layer (each file, each override) is checked against the dataclasses in ``schema.py``
before it is merged, so an unknown key is reported with the file it came from and the nearest
valid names. The result is a struct-mode OmegaConf ``DictConfig`` (attribute typos raise).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import posixpath
import re
import typing
from typing import Any, Callable, Iterable

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from distrec.config.schema import RANGE, DistrecConfig, Range
from distrec.errors import ConfigError

COMMAND_LINE = "command line"
_SECRET_KEY = re.compile(r"secret|password|token|key_id|access_key", re.IGNORECASE)

Layer = tuple[str, dict]  # (source: file path or "command line (key=value)", raw mapping)
SWEEP_KEYED_SECTIONS = ("grid", "random", "baseline")  # sweep.<section>.<dotted config key>


SectionsOf = Callable[[str], dict[str, type]]  # recipe name -> its typed "model"/"method" sections


def load_config_sections(path: str, overrides: Iterable[str], sections_of: SectionsOf) -> DictConfig:
    """Load ``path`` (with its ``defaults``), apply ``key=value`` overrides, validate, return.

    ``sections_of(run.recipe)`` types the recipe's sections; ``distrec.methods.load_config``
    passes the method registry's."""
    layers = _file_layers(str(path), stack=())
    layers += [(f"{COMMAND_LINE} ({item})", _parse_override(item)) for item in overrides]
    layers = [(source, _dotted_sweep_keys(raw)) for source, raw in layers]

    sections = sections_of(_recipe_name(layers))
    for source, raw in layers:
        _check_keys(raw, DistrecConfig, "", source, sections)
        _check_sweep_keys(raw, source, sections)

    cfg = OmegaConf.structured(DistrecConfig)
    for name, section_cls in sections.items():
        cfg[name] = OmegaConf.structured(section_cls)
    for source, raw in layers:
        try:
            cfg = OmegaConf.merge(cfg, raw)
        except OmegaConfBaseException as e:
            raise _type_error(e, source, sections) from None

    try:  # interpolations stay live in cfg; resolve a copy only to check them
        missing = sorted(OmegaConf.missing_keys(cfg))
        if not missing:
            OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"config key '{e.full_key}' (from {path} + overrides): {_first_line(e)}") from None
    if missing:
        raise ConfigError(
            f"missing required config value(s): {', '.join(missing)} "
            f"(set them in {path} or on the command line, e.g. {missing[0]}=...)"
        )

    OmegaConf.set_struct(cfg, True)
    return cfg


def save_resolved_config(cfg: DictConfig, run_dir: str) -> str:
    """Write the resolved config (secrets redacted) to ``<run_dir>/config.yaml`` atomically,
    on a local disk or any fsspec URL (``s3://``)."""
    from distrec.storage import filesystem, write_text_atomic

    fs, path = filesystem(run_dir, cfg.data.s3_endpoint_url)
    fs.makedirs(path, exist_ok=True)
    target = posixpath.join(run_dir, "config.yaml")
    write_text_atomic(target, OmegaConf.to_yaml(OmegaConf.create(redact_secrets(config_to_dict(cfg)))), fs)
    return target


def write_config_record(path: str, config: dict, payload: dict) -> None:
    """``{"config": config, **payload}`` as JSON at ``path`` (any fsspec URL), atomically."""
    import json

    from distrec.storage import filesystem, write_text_atomic

    fs, p = filesystem(path)
    fs.makedirs(posixpath.dirname(p), exist_ok=True)
    write_text_atomic(path, json.dumps({"config": config, **payload}, indent=2, default=str), fs)


def read_config_record(path: str, config: dict) -> dict | None:
    """The record at ``path`` if it was written for ``config`` (a rerun may reuse its work)."""
    import json

    from distrec.storage import filesystem

    fs, p = filesystem(path)
    if not fs.exists(p):
        return None
    saved = json.loads(fs.cat_file(p))
    return saved if saved.get("config") == config else None


def config_to_dict(cfg: DictConfig) -> dict:
    """Plain, resolved ``dict`` of ``cfg``; choice fields (``schema.Choice`` members) as strings."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True, enum_to_str=True)


def redact_secrets(value: Any) -> Any:
    """Copy of ``value`` with every value under a credential-like key replaced by ``"***"``."""
    if isinstance(value, dict):
        return {
            k: "***" if _SECRET_KEY.search(str(k)) and v is not None else redact_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_secrets(v) for v in value]
    return value


def run_dir(cfg: DictConfig) -> str:
    return os.path.join(cfg.run.output_dir, cfg.run.name)


# --- files and overrides ---------------------------------------------------------------------


def _file_layers(path: str, stack: tuple[str, ...]) -> list[Layer]:
    """Layers of ``path`` in merge order: its defaults (depth first), then the file itself."""
    real = os.path.realpath(path)
    if real in stack:
        chain = " -> ".join([*stack[stack.index(real):], real])
        raise ConfigError(f"defaults cycle in config files: {chain}")
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML in config file {path}: {e}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(raw).__name__}")

    defaults = raw.pop("defaults", None) or []
    if isinstance(defaults, str):
        defaults = [defaults]
    if not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults):
        raise ConfigError(f"'defaults' in {path} must be a list of file paths, got {defaults!r}")
    layers: list[Layer] = []
    for d in defaults:
        layers += _file_layers(os.path.join(os.path.dirname(path), d), (*stack, real))
    return [*layers, (path, raw)]


def _parse_override(item: str) -> dict:
    key, sep, _ = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}' on the {COMMAND_LINE} must be key=value")
    try:  # OmegaConf's YAML loader: 1e-3 is a float, [a,b] a list, null None, ${..} kept
        return OmegaConf.to_container(OmegaConf.from_dotlist([item]), resolve=False)
    except OmegaConfBaseException as e:
        raise ConfigError(f"invalid override '{item}' on the {COMMAND_LINE}: {_first_line(e)}") from None


def _dotted_sweep_keys(raw: dict) -> dict:
    """The sweep's ``grid``/``random``/``baseline`` are keyed by dotted config keys; an override
    ``sweep.grid.dense.lr=[..]`` (or nested YAML) parses as nested mappings: flatten those."""
    sweep = raw.get("sweep")
    if not isinstance(sweep, dict):
        return raw
    flat = {name: _flatten(section) for name, section in sweep.items()
            if name in SWEEP_KEYED_SECTIONS and isinstance(section, dict)}
    return {**raw, "sweep": {**sweep, **flat}}


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def nest_dotted(key: str, value: Any) -> dict:
    """``("a.b.c", v)`` -> ``{"a": {"b": {"c": v}}}``."""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def _recipe_name(layers: list[Layer]) -> str:
    recipe = DistrecConfig().run.recipe
    for _, raw in layers:
        run = raw.get("run")
        if isinstance(run, dict) and "recipe" in run:
            recipe = run["recipe"]
    return str(recipe)


# --- validation ------------------------------------------------------------------------------


def _field_types(cls: type, sections: dict[str, type]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    types = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    if cls is DistrecConfig:
        types.update(sections)
    return types


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(type without Optional, whether None is allowed)."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else tp), len(args) < len(typing.get_args(tp))
    return tp, False


def _field_ranges(cls: type) -> dict[str, Range]:
    return {f.name: f.metadata[RANGE] for f in dataclasses.fields(cls) if RANGE in f.metadata}


def _check_keys(raw: dict, cls: type, prefix: str, source: str, sections: dict[str, type]) -> None:
    """Raise ConfigError for any key of ``raw`` (recursively) that ``cls`` does not declare, for
    any value of a choice field (``schema.Choice``) that is not one of its values, and for any
    number outside its field's range (``schema.ranged``)."""
    types = _field_types(cls, sections)
    ranges = _field_ranges(cls)
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in types:
            close = difflib.get_close_matches(str(key), list(types), n=3)
            hint = f"did you mean: {', '.join(close)}?" if close else f"valid keys: {', '.join(types)}"
            raise ConfigError(f"unknown config key '{dotted}' in {source}; {hint}")
        tp, optional = _unwrap(types[key])
        if dataclasses.is_dataclass(tp):
            if isinstance(value, dict):
                _check_keys(value, tp, f"{dotted}.", source, sections)
            elif not (value is None and optional) and not _is_interpolation(value):
                raise ConfigError(
                    f"config key '{dotted}' in {source}: expected a mapping of {tp.__name__} "
                    f"fields, got {value!r}"
                )
        elif typing.get_origin(tp) is dict and isinstance(value, dict):
            item_tp, _ = _unwrap(typing.get_args(tp)[1])
            if dataclasses.is_dataclass(item_tp):
                for name, item in value.items():
                    if isinstance(item, dict):
                        _check_keys(item, item_tp, f"{dotted}.{name}.", source, sections)
        elif typing.get_origin(tp) is list and isinstance(value, list):
            item_tp, _ = _unwrap(typing.get_args(tp)[0])
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item_tp) and isinstance(item, dict):
                    _check_keys(item, item_tp, f"{dotted}[{i}].", source, sections)
                else:
                    _check_choice(item, item_tp, f"{dotted}[{i}]", source)
                    _check_range(item, ranges.get(key), f"{dotted}[{i}]", source)
        else:
            _check_choice(value, tp, dotted, source)
            for item in value if isinstance(value, list) else [value]:  # a list: a sweep's values
                _check_range(item, ranges.get(key), dotted, source)


def _check_choice(value: Any, tp: Any, dotted: str, source: str) -> None:
    """A scalar given to a choice field must be one of its values (None, interpolations and
    lists, e.g. a sweep's list of values, are left to OmegaConf and the final resolve)."""
    if not (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        return
    if value is None or isinstance(value, (list, dict)) or _is_interpolation(value):
        return
    if value not in [m.value for m in tp]:
        raise _choice_error(dotted, source, value, tp)


def _check_range(value: Any, bounds: Range | None, dotted: str, source: str) -> None:
    """Numbers only: None, interpolations and wrong types are left to OmegaConf's type check."""
    if bounds is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not bounds.contains(value):
        raise ConfigError(f"config key '{dotted}' in {source}: {value!r} is out of range; expected {bounds}")


def _choice_error(key: str, source: str, value: Any, choices: type[enum.Enum]) -> ConfigError:
    allowed = ", ".join(str(m.value) for m in choices)
    return ConfigError(f"config key '{key}' in {source}: {value!r} is not one of {allowed}")


def _check_sweep_keys(raw: dict, source: str, sections: dict[str, type]) -> None:
    """Every key a sweep sets must be a config key: a typo fails here, before any trial starts."""
    sweep = raw.get("sweep")
    if not isinstance(sweep, dict):
        return
    for name in SWEEP_KEYED_SECTIONS:
        section = sweep.get(name)
        for key, value in (section.items() if isinstance(section, dict) else ()):
            if str(key).split(".")[0] == "sweep":
                raise ConfigError(f"sweep.{name} in {source} sets '{key}': a sweep cannot vary its own settings")
            if name != "baseline" and not isinstance(value, list):
                raise ConfigError(f"sweep.{name}.{key} in {source}: expected a list of values, got {value!r}")
            _check_keys(nest_dotted(str(key), value), DistrecConfig, "", f"sweep.{name} of {source}", sections)


def _is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${")


def _declared_type(full_key: str, sections: dict[str, type]) -> Any:
    """Declared type of a dotted key such as ``sharding.tables.t.embedding_dim`` or ``a.b[0]``
    (None when the key leads below a field that is not a section, list or mapping)."""
    tp: Any = DistrecConfig
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", full_key):
        base, _ = _unwrap(tp)
        if part.startswith("["):
            tp = (typing.get_args(base) or (Any,))[0]
        elif dataclasses.is_dataclass(base):
            tp = _field_types(base, sections).get(part, Any)
        elif typing.get_origin(base) is dict:
            tp = typing.get_args(base)[1]
        else:
            return None
    return tp


def _type_name(tp: Any) -> str:
    if tp is None:
        return "?"
    return getattr(tp, "__name__", None) if isinstance(tp, type) else str(tp).replace("typing.", "")


def _type_error(e: OmegaConfBaseException, source: str, sections: dict[str, type]) -> ConfigError:
    key = getattr(e, "full_key", None) or "?"
    declared = _declared_type(key, sections) if key != "?" else None
    choices, _ = _unwrap(declared)
    if isinstance(choices, type) and issubclass(choices, enum.Enum):
        return _choice_error(key, source, getattr(e, "value", None), choices)
    expected = _type_name(declared)
    return ConfigError(
        f"invalid value for config key '{key}' in {source}: expected {expected}, "
        f"got {getattr(e, 'value', None)!r} ({_first_line(e)})"
    )


def _first_line(e: Exception) -> str:
    msg = getattr(e, "msg", None) or str(e)
    return msg.splitlines()[0] if msg else type(e).__name__
