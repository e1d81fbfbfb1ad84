"""Tencent TTL continual-learning files (the Conure/TERACON format) -> one Conure task dataset.

Each line: ``source_len`` comma-separated item ids of the user's history, left-padded with 0;
for item_rec and profile tasks then an empty field and one or more target ids::

    0,0,...,0,154,155,157            (next_item: the source only)
    0,0,...,0,141,142,...,152,,6,8,9  (item_rec: targets 6, 8, 9; profile: exactly one label)

next_item: train holds each sequence without its last two items, valid without its last, test
all of it. item_rec and profile split users (lines) into train/valid/test (seeded); an item_rec
line gives one row per target. Profile labels are mapped to classes 0..C-1 in sorted order
(``classes`` in task.yaml keeps the raw values). Source ids are kept as they are, so every task
of one TTL set shares T1's vocabulary: pass ``num_items`` (T1's) when importing later tasks.
"""

from __future__ import annotations

import numpy as np

from distrec.data.importers.common import require_file
from distrec.data.importers.conure_common import split_of_users, write_task
from distrec.data.schema import FeatureSchema
from distrec.data.storage import filesystem
from distrec.errors import ConfigError, DataError

KINDS = ("next_item", "item_rec", "profile")


def import_conure_ttl(src: str, out: str, *, kind: str = "next_item", source_len: int = 100,
                      num_items: int | None = None, num_targets: int | None = None,
                      max_len: int | None = None, valid_share: float = 0.1, test_share: float = 0.1,
                      seed: int = 0, overwrite: bool = False) -> FeatureSchema:
    if kind not in KINDS:
        raise ConfigError(f"conure_ttl import: kind must be one of {KINDS}, got {kind!r}")
    sources, targets = read_ttl(src, kind, source_len)
    top = max((int(s.max()) for s in sources if len(s)), default=0)
    if num_items is None:
        num_items = top + 1
    elif top >= num_items:
        raise DataError(f"{src}: source id {top} is outside the item vocabulary [0, {num_items}) "
                        f"given by num_items={num_items}")
    max_len = max_len or source_len
    if kind == "next_item":
        splits = {
            "train": ([s[:-2] for s in sources if len(s) >= 4], None),
            "valid": ([s[:-1] for s in sources if len(s) >= 3], None),
            "test": ([s for s in sources if len(s) >= 2], None),
        }
        return write_task(out, kind, splits, num_items, num_items, max_len, overwrite)

    part = split_of_users(len(sources), valid_share, test_share, seed)
    info = {}
    if kind == "profile":
        classes = sorted({int(t[0]) for t in targets})
        index = {c: i for i, c in enumerate(classes)}
        targets = [np.array([index[int(t[0])]]) for t in targets]
        num_outputs, info["classes"] = len(classes), classes
    else:
        top_target = max(int(t.max()) for t in targets)
        num_outputs = num_targets or top_target + 1
        if top_target >= num_outputs:
            raise DataError(f"{src}: target id {top_target} is outside [0, {num_outputs}) "
                            f"given by num_targets={num_targets}")
    splits = {}
    for i, name in enumerate(("train", "valid", "test")):
        rows = [(s, t) for s, ts, p in zip(sources, targets, part) if p == i for t in ts]
        splits[name] = ([s for s, _ in rows], np.array([t for _, t in rows], dtype=np.int64))
    return write_task(out, kind, splits, num_items, num_outputs, max_len, overwrite, **info)


def read_ttl(src: str, kind: str, source_len: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(source ids without padding, target ids) per line; errors name the file and line."""
    require_file(src)
    fs, path = filesystem(src)
    sources, targets = [], []
    with fs.open(path, "r", compression="infer") as fh:
        for line_no, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            fields = line.split(",")
            source, rest = fields[:source_len], fields[source_len:]
            if len(source) < source_len or any(f == "" for f in source):
                raise DataError(f"{src}: line {line_no} has {sum(f != '' for f in source)} source ids "
                                f"before the first empty field; expected {source_len} (0-padded)")
            if kind == "next_item" and rest:
                raise DataError(f"{src}: line {line_no} has targets after the source sequence; "
                                "import it with --kind item_rec or --kind profile")
            if kind != "next_item" and (len(rest) < 2 or rest[0] != ""):
                raise DataError(f"{src}: line {line_no} needs an empty field and then target id(s) "
                                f"after the {source_len} source ids")
            ids = _ints(source, src, line_no)
            sources.append(ids[ids != 0])
            target = _ints(rest[1:], src, line_no)
            if kind == "profile" and len(target) != 1:
                raise DataError(f"{src}: line {line_no} has {len(target)} labels; a profile task "
                                "needs exactly one")
            targets.append(target)
    if not sources:
        raise DataError(f"{src}: no lines")
    return sources, targets


def _ints(fields: list[str], src: str, line_no: int) -> np.ndarray:
    try:
        values = np.array([int(f) for f in fields], dtype=np.int64)
    except ValueError:
        bad = next(f for f in fields if not f.strip().lstrip("-").isdigit())
        raise DataError(f"{src}: line {line_no} has {bad!r}; expected an integer id") from None
    if (values < 0).any():
        raise DataError(f"{src}: line {line_no} has a negative id; expected ids >= 0")
    return values
