"""Every declared config key is read somewhere: a key nothing reads is a setting that silently does
nothing. A static scan: a field counts as read when its name appears in some module of distrec/
other than the one declaring it, as an attribute read (``cfg.trainer.log_every``), a subscript
(``section["log_every"]``) or a ``get("log_every"``/``getattr(x, "log_every"`` call. Comments,
docstrings and assignments do not count. Names are not resolved to their section, so a field
shares the evidence of any other field of the same name (``distill.mode`` reads count for
``early_stopping.mode``): this catches keys whose name is read nowhere, not every unused key."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing
from functools import cache
from pathlib import Path

import pytest

from distrec.config.schema import DistrecConfig
from distrec.methods import RECIPES

PACKAGE = Path(__file__).resolve().parents[2] / "distrec"

# Keys read in a way the scan cannot see: key -> why. ``<recipe>:`` prefixes a recipe's key.
READ_DYNAMICALLY: dict[str, str] = {}

# Keys nothing reads yet, known and reported: key -> what is missing. Remove an entry once the
# key is read (the test says so) or the key is removed.
NOT_READ_YET: dict[str, str] = {}


def _unwrap(tp):
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def leaf_fields(cls: type, prefix: str) -> list[tuple[str, str, Path]]:
    """(dotted key, field name, file declaring it) of every leaf under ``cls``, through nested
    sections and lists/mappings of sections (``method.tasks[].kind``)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = _unwrap(hints[f.name])
        item = _unwrap(typing.get_args(tp)[-1]) if typing.get_origin(tp) in (list, dict) else None
        if dataclasses.is_dataclass(tp):
            out += leaf_fields(tp, f"{prefix}{f.name}.")
        elif item is not None and dataclasses.is_dataclass(item):
            out += leaf_fields(item, f"{prefix}{f.name}[].")
        else:
            owner = next(c for c in cls.__mro__ if f.name in vars(c).get("__annotations__", {}))
            out.append((f"{prefix}{f.name}", f.name, Path(inspect.getsourcefile(owner)).resolve()))
    return out


def sections_of(group: str) -> list[tuple[str, type]]:
    if group == "engine":
        hints = typing.get_type_hints(DistrecConfig)
        return [(f.name, _unwrap(hints[f.name])) for f in dataclasses.fields(DistrecConfig)
                if dataclasses.is_dataclass(_unwrap(hints[f.name]))]
    return list(RECIPES[group].config_sections().items())


def _read_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
        return node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and isinstance(node.slice, ast.Constant):
        return node.slice.value
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args:
            arg = node.args[0]
        elif isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) > 1:
            arg = node.args[1]
        else:
            return None
        return arg.value if isinstance(arg, ast.Constant) else None
    return None


@cache
def readers() -> dict[str, frozenset[Path]]:
    """name -> the distrec modules that read it."""
    found: dict[str, set[Path]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = _read_name(node)
            if isinstance(name, str):
                found.setdefault(name, set()).add(path.resolve())
    return {name: frozenset(paths) for name, paths in found.items()}


def unread_keys(group: str) -> list[str]:
    prefix = "" if group == "engine" else f"{group}:"
    unread = []
    for section, cls in sections_of(group):
        for key, name, declared_in in leaf_fields(cls, f"{section}."):
            if not readers().get(name, frozenset()) - {declared_in}:
                unread.append(prefix + key)
    return unread


def _group_of(key: str) -> str:
    return key.split(":")[0] if ":" in key else "engine"


@pytest.mark.parametrize("group", ["engine", *RECIPES])
def test_every_config_key_is_read(group):
    unread = set(unread_keys(group))
    unexplained = sorted(unread - set(READ_DYNAMICALLY) - set(NOT_READ_YET))
    assert not unexplained, f"config keys nothing in distrec/ reads: {unexplained}"
    listed = {k for k in (*READ_DYNAMICALLY, *NOT_READ_YET) if _group_of(k) == group}
    stale = sorted(listed - unread)
    assert not stale, f"now read (or gone): remove from this test's lists: {stale}"


def test_the_scan_sees_reads_and_ignores_docstrings_and_writes():
    source = '"""cfg.a.doc_only"""\ncfg.x.attr_read\nd["sub_read"]\nd.get("get_read", 1)\ncfg.y.written = 1\n'
    tree = ast.parse(source)
    names = {_read_name(n) for n in ast.walk(tree)} - {None}
    assert {"attr_read", "sub_read", "get_read", "x", "y"} <= names
    assert not {"doc_only", "written"} & names
