"""The feature schema: a YAML file that says which Parquet columns feed the model and how.

Example (every key except ``sparse``/``labels`` is optional)::

    sparse:                        # one int64 id per row, or list<int64> with multi_hot: true
      - {name: user_id, num_embeddings: 944}
      - {name: item_id, num_embeddings: 100000, hash: true}   # ids taken modulo num_embeddings
      - {name: genres, num_embeddings: 20, multi_hot: true}
    sequence:                      # list<int64> histories, truncated to their last max_len ids
      - {name: hist_item_id, table: item_id, max_len: 50}     # looked up in item_id's table
      - {name: item_seq, num_embeddings: 1683, max_len: 200}  # or owning a table of its own
    dense: [price, age]            # float columns
    labels: [click]                # float/int columns, first one is the main label (may be
                                   # empty for self-supervised sequence data)
    binary_labels: [click]         # labels that must lie in [0, 1] (click/conversion); others
                                   # (class ids, targets) need only be finite
    group_key: user_id             # int64 column grouping rows for GAUC

Every sparse field owns a table named after it unless ``table`` names another field's table;
a sequence field either owns a table (``num_embeddings``) or shares another field's (``table``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import yaml

from distrec.errors import DataError
from distrec.storage import filesystem, storage_error


@dataclass(frozen=True)
class SparseField:
    name: str
    num_embeddings: int
    hash: bool = False
    multi_hot: bool = False
    table: str | None = None

    @property
    def table_name(self) -> str:
        return self.table or self.name


@dataclass(frozen=True)
class SequenceField:
    name: str
    table: str | None = None
    max_len: int = 50
    num_embeddings: int | None = None

    @property
    def owns_table(self) -> bool:
        return self.num_embeddings is not None


@dataclass(frozen=True)
class TableSpec:
    name: str
    num_embeddings: int
    feature_names: tuple[str, ...]


@dataclass(frozen=True)
class FeatureSchema:
    sparse: tuple[SparseField, ...]
    labels: tuple[str, ...]
    dense: tuple[str, ...] = ()
    sequence: tuple[SequenceField, ...] = ()
    group_key: str | None = None
    binary_labels: tuple[str, ...] = ()
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self) -> None:
        _validate(self)

    # --- names -------------------------------------------------------------------------
    @property
    def sparse_names(self) -> list[str]:
        """KeyedJaggedTensor keys, in order: sparse fields, then sequence fields."""
        return [f.name for f in self.sparse] + [f.name for f in self.sequence]

    @property
    def columns(self) -> list[str]:
        """Every Parquet column the schema reads."""
        cols = self.sparse_names + list(self.dense) + list(self.labels)
        if self.group_key and self.group_key not in cols:
            cols.append(self.group_key)
        return cols

    def tables(self) -> list[TableSpec]:
        """One TableSpec per embedding table, with the features that look it up."""
        by_table: dict[str, list[str]] = {}
        sizes: dict[str, int] = {}
        for f in self.sparse:
            by_table.setdefault(f.table_name, []).append(f.name)
            sizes[f.table_name] = max(sizes.get(f.table_name, 0), f.num_embeddings)
        for s in self.sequence:
            if s.owns_table:
                by_table.setdefault(s.name, []).append(s.name)
                sizes[s.name] = s.num_embeddings
        for s in self.sequence:
            if not s.owns_table:
                by_table[self.table_of(s.table)].append(s.name)
        return [TableSpec(t, sizes[t], tuple(names)) for t, names in by_table.items()]

    def table_of(self, feature: str) -> str:
        """The table a sparse or sequence feature is looked up in."""
        for f in self.sparse:
            if f.name == feature:
                return f.table_name
        for s in self.sequence:
            if s.name == feature:
                return s.name if s.owns_table else self.table_of(s.table)
        raise KeyError(feature)

    def field(self, name: str) -> SparseField:
        for f in self.sparse:
            if f.name == name:
                return f
        raise KeyError(name)

    # --- files -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sparse": [_compact(asdict(f), SparseField) for f in self.sparse],
            "labels": list(self.labels),
        }
        if self.dense:
            out["dense"] = list(self.dense)
        if self.sequence:
            out["sequence"] = [_compact(asdict(s), SequenceField) for s in self.sequence]
        if self.group_key:
            out["group_key"] = self.group_key
        if self.binary_labels:
            out["binary_labels"] = list(self.binary_labels)
        return out

    def save(self, path: str) -> None:
        """Write the schema as YAML atomically (temp file, then rename) on any fsspec path."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        fs, fs_path = fsspec.core.url_to_fs(path)
        if fs.protocol in ("file", ("file", "local")) or "file" in fs.protocol:
            os.makedirs(os.path.dirname(os.path.abspath(fs_path)), exist_ok=True)
            tmp = fs_path + ".tmp"
            with open(tmp, "w") as fh:
                fh.write(text)
            os.replace(tmp, fs_path)
        else:
            with fs.open(fs_path, "w") as fh:  # object stores publish a whole object on close
                fh.write(text)

    @classmethod
    def load(cls, path: str, s3_endpoint_url: str | None = None) -> "FeatureSchema":
        """The schema at ``path`` (local or s3://, through ``data.s3_endpoint_url`` if given)."""
        fs, fs_path = filesystem(path, s3_endpoint_url)
        try:
            with fs.open(fs_path, "r") as fh:
                raw = yaml.safe_load(fh)
        except FileNotFoundError:
            raise DataError(f"feature schema file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise DataError(f"feature schema {path} is not valid YAML: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - an unreachable endpoint becomes one actionable error
            raise storage_error(path, exc, s3_endpoint_url) from None
        return cls.from_dict(raw, source=path)

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<memory>") -> "FeatureSchema":
        if not isinstance(raw, dict):
            raise DataError(f"feature schema {source}: expected a mapping at the top level")
        allowed = {"sparse", "sequence", "dense", "labels", "group_key", "binary_labels"}
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise DataError(
                f"feature schema {source}: unknown key(s) {unknown}; expected {sorted(allowed)}"
            )
        try:
            sparse = tuple(_make(SparseField, f, source, "sparse") for f in raw.get("sparse") or [])
            sequence = tuple(
                _make(SequenceField, f, source, "sequence") for f in raw.get("sequence") or []
            )
        except TypeError as exc:
            raise DataError(f"feature schema {source}: {exc}") from None
        return cls(
            sparse=sparse,
            sequence=sequence,
            dense=tuple(raw.get("dense") or []),
            labels=tuple(raw.get("labels") or []),
            group_key=raw.get("group_key"),
            binary_labels=tuple(raw.get("binary_labels") or []),
            source=source,
        )


def _make(kind: type, raw: Any, source: str, section: str):
    if not isinstance(raw, dict) or "name" not in raw:
        raise DataError(f"feature schema {source}: each '{section}' entry needs a 'name', got {raw!r}")
    allowed = set(kind.__dataclass_fields__)
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise DataError(
            f"feature schema {source}: {section} field '{raw['name']}' has unknown key(s) "
            f"{unknown}; expected some of {sorted(allowed)}"
        )
    return kind(**raw)


def _compact(d: dict[str, Any], kind: type) -> dict[str, Any]:
    defaults = {k: f.default for k, f in kind.__dataclass_fields__.items()}
    return {k: v for k, v in d.items() if k == "name" or v != defaults.get(k)}


def _validate(schema: FeatureSchema) -> None:
    src = schema.source
    if not schema.sparse and not schema.sequence:
        raise DataError(f"feature schema {src}: needs at least one 'sparse' or 'sequence' field")
    names = schema.sparse_names + list(schema.dense) + list(schema.labels)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"feature schema {src}: column(s) {dupes} appear more than once")
    not_labels = sorted(set(schema.binary_labels) - set(schema.labels))
    if not_labels:
        raise DataError(f"feature schema {src}: binary_labels {not_labels} are not in labels {list(schema.labels)}")
    owners = {f.name for f in schema.sparse} | {s.name for s in schema.sequence if s.owns_table}
    for f in schema.sparse:
        if not isinstance(f.num_embeddings, int) or f.num_embeddings <= 0:
            raise DataError(
                f"feature schema {src}: sparse field '{f.name}' needs num_embeddings > 0, "
                f"got {f.num_embeddings!r}"
            )
        if f.table and f.table not in owners:
            raise DataError(
                f"feature schema {src}: sparse field '{f.name}' shares table '{f.table}', "
                f"which is not a sparse field ({sorted(owners)})"
            )
    for s in schema.sequence:
        if s.owns_table == (s.table is not None):
            raise DataError(
                f"feature schema {src}: sequence field '{s.name}' needs exactly one of "
                f"'num_embeddings' (its own table) or 'table' (another field's)"
            )
        if s.owns_table and s.num_embeddings <= 0:
            raise DataError(f"feature schema {src}: sequence field '{s.name}' needs num_embeddings > 0")
        if s.table is not None and s.table not in owners:
            raise DataError(
                f"feature schema {src}: sequence field '{s.name}' uses table '{s.table}', "
                f"which no field owns ({sorted(owners)})"
            )
        if s.max_len <= 0:
            raise DataError(f"feature schema {src}: sequence field '{s.name}' needs max_len > 0")
