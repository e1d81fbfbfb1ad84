"""The feature spec of ``distrec data import table``: what each source column becomes.

A YAML file (``configs/data/table-spec.example.yaml`` shows every key)::

    delimiter: ","          # text files; detected when absent (.tsv: tab)
    column_names: [...]     # only for text files without a header line
    columns:                # source column -> what it becomes; unlisted columns are ignored
      user_id:    {type: categorical, min_count: 2}        # vocabulary; rarer values -> OOV id
      city:       {type: categorical, hash_buckets: 1000}   # or hashed to 1000 ids
      genres:     {type: categorical, separator: "|"}       # multi-hot
      price:      {type: numeric, fill: 0.0, normalize: standard}   # standard | minmax | log | none
      age:        {type: numeric, bucketize: [18, 25, 35, 50]}      # or bucketize: 10 (quantiles)
      hist_items: {type: sequence, separator: "^", max_len: 20, share: item_id}
      click:      {type: label}                              # labels in order: the first is the main one
      conversion: {type: label}
      ts:         {type: timestamp}
    group_key: user_id      # rows grouped for GAUC
    split: {by: random, fractions: [0.8, 0.1, 0.1], seed: 0}
    #      {by: hash, key: user_id}   {by: time, column: ts} (or valid_from/test_from)
    #      {by: files, train: "train_*.csv", valid: "valid.csv", test: "test.csv"}

Id layout of a vocabulary: 0 = missing (empty field), 1 = out of vocabulary (seen fewer than
``min_count`` times in the training split, or never), 2.. = values by falling training count. A
hashed column: 0 = missing, 1 + hash(value) % (hash_buckets - 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from distrec.errors import ConfigError

TYPES = ("categorical", "numeric", "sequence", "label", "timestamp")
NORMALIZE = ("none", "standard", "minmax", "log")
SPLITS = ("random", "hash", "time", "files")
KEYS = {
    "categorical": {"type", "min_count", "hash_buckets", "separator", "share"},
    "sequence": {"type", "min_count", "hash_buckets", "separator", "share", "max_len"},
    "numeric": {"type", "fill", "normalize", "bucketize"},
    "label": {"type", "binary"},
    "timestamp": {"type"},
}


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str
    min_count: int = 1
    hash_buckets: int | None = None
    separator: str | None = None  # categorical: multi-hot; sequence: required
    share: str | None = None  # use this other column's vocabulary and embedding table
    max_len: int = 50
    fill: float | str = 0.0  # a number, or "mean" (of the training split)
    normalize: str = "none"
    bucketize: tuple[float, ...] | int | None = None  # boundaries, or a number of quantile buckets
    binary: bool = True

    @property
    def is_ids(self) -> bool:
        """Written as ids (an embedding lookup), not as a float."""
        return self.type in ("categorical", "sequence") or (self.type == "numeric" and self.bucketize is not None)

    @property
    def is_list(self) -> bool:
        return self.type == "sequence" or (self.type == "categorical" and self.separator is not None)


@dataclass(frozen=True)
class SplitSpec:
    by: str = "random"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    key: str | None = None  # by: hash
    column: str | None = None  # by: time
    valid_from: float | str | None = None  # by: time, instead of fractions
    test_from: float | str | None = None
    files: dict[str, str] = field(default_factory=dict)  # by: files, split -> path or glob


@dataclass(frozen=True)
class TableSpec:
    columns: tuple[ColumnSpec, ...]
    split: SplitSpec = SplitSpec()
    group_key: str | None = None
    delimiter: str | None = None
    column_names: tuple[str, ...] | None = None
    source: str = "<memory>"

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def of_type(self, *types: str) -> list[ColumnSpec]:
        return [c for c in self.columns if c.type in types]

    @property
    def source_columns(self) -> list[str]:
        """Every source column the import reads."""
        names = [c.name for c in self.columns]
        for extra in (self.group_key, self.split.key, self.split.column):
            if extra and extra not in names:
                names.append(extra)
        return names

    def table_owner(self, c: ColumnSpec) -> ColumnSpec:
        """The column whose vocabulary (or hash) and embedding table ``c`` uses."""
        return self.column(c.share) if c.share else c

    def to_dict(self) -> dict[str, Any]:
        defaults = ColumnSpec("", "")
        columns = {}
        for c in self.columns:
            d = {"type": c.type}
            for key in sorted(KEYS[c.type] - {"type"}):
                value = getattr(c, key)
                if value != getattr(defaults, key):
                    d[key] = list(value) if isinstance(value, tuple) else value
            columns[c.name] = d
        split = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self.split).items()
                 if v not in (None, {}) and v != getattr(SplitSpec(), k)} | {"by": self.split.by}
        out: dict[str, Any] = {"columns": columns, "split": split}
        if self.group_key:
            out["group_key"] = self.group_key
        if self.delimiter:
            out["delimiter"] = self.delimiter
        if self.column_names:
            out["column_names"] = list(self.column_names)
        return out


def load_spec(path: str) -> TableSpec:
    from distrec.storage import filesystem

    fs, fs_path = filesystem(path)
    try:
        with fs.open(fs_path, "r") as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"table spec not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"table spec {path} is not valid YAML: {exc}") from None
    return parse_spec(raw, source=path)


def parse_spec(raw: Any, source: str = "<memory>") -> TableSpec:
    """A TableSpec from its YAML mapping; every mistake is a ConfigError naming the key."""
    where = f"table spec {source}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with 'columns'")
    _no_unknown(raw, {"columns", "split", "group_key", "delimiter", "column_names"}, where)
    if not isinstance(raw.get("columns"), dict) or not raw["columns"]:
        raise ConfigError(f"{where}: 'columns' must map source column names to {{type: ...}}")
    columns = tuple(_column(str(name), c, where) for name, c in raw["columns"].items())
    spec = TableSpec(
        columns=columns,
        split=_split(raw.get("split") or {}, where),
        group_key=raw.get("group_key"),
        delimiter=_delimiter(raw.get("delimiter"), where),
        column_names=tuple(raw["column_names"]) if raw.get("column_names") else None,
        source=source,
    )
    _check(spec, where)
    return spec


def _no_unknown(raw: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(allowed)}")


def _column(name: str, raw: Any, where: str) -> ColumnSpec:
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict) or raw.get("type") not in TYPES:
        raise ConfigError(f"{where}: column '{name}' needs a type, one of {list(TYPES)}; got {raw!r}")
    _no_unknown(raw, KEYS[raw["type"]], f"{where}: column '{name}' ({raw['type']})")
    values = dict(raw)
    if isinstance(values.get("bucketize"), list):
        values["bucketize"] = tuple(float(b) for b in values["bucketize"])
    c = ColumnSpec(name=name, **values)
    bad = None
    if c.min_count < 1:
        bad = f"min_count must be >= 1, got {c.min_count}"
    elif c.hash_buckets is not None and (c.hash_buckets < 2 or c.min_count > 1 or c.share):
        bad = "hash_buckets must be >= 2, and excludes min_count and share"
    elif c.type == "sequence" and not c.separator:
        bad = "a sequence needs its separator (e.g. '^' or '|')"
    elif c.max_len < 1:
        bad = f"max_len must be >= 1, got {c.max_len}"
    elif c.normalize not in NORMALIZE:
        bad = f"normalize must be one of {list(NORMALIZE)}, got {c.normalize!r}"
    elif not (isinstance(c.fill, (int, float)) or c.fill == "mean"):
        bad = f"fill must be a number or 'mean', got {c.fill!r}"
    elif isinstance(c.bucketize, tuple) and list(c.bucketize) != sorted(set(c.bucketize)):
        bad = f"bucketize boundaries must be increasing, got {list(c.bucketize)}"
    elif isinstance(c.bucketize, int) and c.bucketize < 2:
        bad = f"bucketize must be a list of boundaries or a number of buckets >= 2, got {c.bucketize}"
    elif c.bucketize is not None and c.normalize != "none":
        bad = "bucketize and normalize exclude each other"
    if bad:
        raise ConfigError(f"{where}: column '{name}': {bad}")
    return c


def _split(raw: Any, where: str) -> SplitSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: split must be a mapping, e.g. {{by: random, fractions: [0.8, 0.1, 0.1]}}")
    _no_unknown(raw, set(SplitSpec.__dataclass_fields__), f"{where}: split")
    values = dict(raw)
    if "fractions" in values:
        values["fractions"] = tuple(float(f) for f in values["fractions"])
    split = SplitSpec(**values)
    f = split.fractions
    if split.by not in SPLITS:
        raise ConfigError(f"{where}: split.by must be one of {list(SPLITS)}, got {split.by!r}")
    if len(f) != 3 or min(f) < 0 or abs(sum(f) - 1) > 1e-6 or f[0] == 0:
        raise ConfigError(f"{where}: split.fractions must be 3 fractions (train > 0, valid, test) summing to 1, got {f}")
    if split.by == "hash" and not split.key:
        raise ConfigError(f"{where}: split by hash needs split.key (the column whose rows stay together)")
    if split.by == "time" and not split.column:
        raise ConfigError(f"{where}: split by time needs split.column (a timestamp or number column)")
    if (split.valid_from is None) != (split.test_from is None):
        raise ConfigError(f"{where}: give both split.valid_from and split.test_from, or neither")
    if split.by == "files" and "train" not in split.files:
        raise ConfigError(f"{where}: split by files needs split.files.train (and optionally valid, test)")
    if sorted(set(split.files) - {"train", "valid", "test"}):
        raise ConfigError(f"{where}: split.files takes train, valid, test; got {sorted(split.files)}")
    return split


def _delimiter(value: Any, where: str) -> str | None:
    if value is None:
        return None
    value = {"tab": "\t", "\\t": "\t"}.get(value, value)
    if not isinstance(value, str) or len(value) != 1:
        raise ConfigError(f"{where}: delimiter must be one character (or 'tab'), got {value!r}")
    return value


def _check(spec: TableSpec, where: str) -> None:
    names = [c.name for c in spec.columns]
    if not spec.of_type("label"):
        raise ConfigError(f"{where}: needs at least one column of type label (e.g. click)")
    if not [c for c in spec.columns if c.is_ids]:
        raise ConfigError(f"{where}: needs at least one categorical or sequence column")
    for c in spec.columns:
        if c.share is None:
            continue
        owner = spec.column(c.share) if c.share in names else None
        if owner is None or owner.type != "categorical" or owner.share or owner.separator:
            raise ConfigError(f"{where}: column '{c.name}' shares '{c.share}', which must be a single-valued "
                              "categorical column with a table of its own")
        if c.type not in ("categorical", "sequence"):
            raise ConfigError(f"{where}: column '{c.name}': only categorical and sequence columns share")
    if spec.split.by == "time" and spec.split.column in names and spec.column(spec.split.column).type not in (
            "timestamp", "numeric"):
        raise ConfigError(f"{where}: split.column '{spec.split.column}' must be a timestamp or numeric column")
