"""The fitted transform of ``distrec data import table``: statistics of the training rows
(vocabularies, moments, quantiles) -> ids and floats, saved beside ``schema.yaml`` so new raw rows
(prediction, export) are mapped exactly as the training data was.

Saved files (under the import's output directory)::

    transform.yaml                   the spec and every fitted number (means, bounds, table sizes)
    vocabularies/<column>.parquet    value (string), id, count: one row per vocabulary entry

``load_transform(out).encode(raw)`` maps a table of raw rows (the source's column names, values
as in the source files) to the imported columns.

Memory while fitting: one dict entry per distinct value of each vocabulary column (~100 B each;
use ``hash_buckets`` for columns with too many distinct values), 5 numbers per numeric column, and
a sample of at most SAMPLE_SIZE values per quantile-bucketized column. Nothing grows with the rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from distrec.data.importers.common import Hasher, map_dictionary, time_values
from distrec.data.importers.table_spec import ColumnSpec, TableSpec, parse_spec
from distrec.data.schema import FeatureSchema, SequenceField, SparseField
from distrec.errors import DataError
from distrec.storage import filesystem

MISSING, OOV = 0, 1  # ids of an empty field and of a value out of the vocabulary
FIRST_ID = 2
SAMPLE_SIZE = 100_000
TRANSFORM_FILE = "transform.yaml"
VOCABULARY_DIR = "vocabularies"


# --- raw values ---------------------------------------------------------------------------------


def tokens(arr: pa.Array, c: ColumnSpec) -> pa.Array:
    """The column as strings, or (separator) as lists of non-empty string tokens; "" is missing."""
    text = arr.cast(pa.string()) if not pa.types.is_string(arr.type) else arr
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    if c.separator is None:
        return text
    lists = pc.split_pattern(text, c.separator)
    flat = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    keep = pc.not_equal(flat, "").fill_null(False)
    lengths = np.bincount(pc.list_parent_indices(lists).to_numpy()[keep.to_numpy(zero_copy_only=False)],
                          minlength=len(lists))
    offsets = pa.array(np.r_[0, np.cumsum(lengths)].astype(np.int32))
    return pa.ListArray.from_arrays(offsets, flat.filter(keep))


def stable_group_ids(arr: pa.Array) -> np.ndarray:
    """63-bit stable hashes of the raw values (pandas' fixed-key SipHash): the same on every run."""
    raw = arr.cast(pa.string()).to_numpy(zero_copy_only=False).astype(object, copy=False)
    return (pd.util.hash_array(raw, categorize=True) >> np.uint64(1)).astype(np.int64)


# --- statistics of the training rows ----------------------------------------------------------------


class Sample:
    """A uniform sample of at most ``size`` values: the values with the ``size`` smallest random keys."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.rng = size, np.random.default_rng(seed)
        self.values, self.keys = np.zeros(0), np.zeros(0)

    def add(self, values: np.ndarray) -> None:
        self.values = np.concatenate([self.values, values])
        self.keys = np.concatenate([self.keys, self.rng.random(len(values))])
        if len(self.values) > self.size:
            keep = np.argpartition(self.keys, self.size)[:self.size]
            self.values, self.keys = self.values[keep], self.keys[keep]


@dataclass
class _Moments:
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, x: np.ndarray) -> None:
        if not len(x):
            return
        n, mean = len(x), float(x.mean())
        delta, total = mean - self.mean, self.n + n
        self.m2 += float(((x - mean) ** 2).sum()) + delta * delta * self.n * n / total
        self.mean += delta * n / total
        self.n = total
        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))


class TableStatistics:
    """Checks every row (labels, times) and counts the training rows, batch by batch."""

    def __init__(self, spec: TableSpec, seed: int = 0) -> None:
        self.spec = spec
        self.counts: dict[str, dict[str, int]] = {c.name: {} for c in spec.of_type("categorical", "sequence")
                                                  if not c.share and c.hash_buckets is None}
        self.moments = {c.name: _Moments() for c in spec.of_type("numeric")}
        self.samples = {c.name: Sample(SAMPLE_SIZE, seed) for c in spec.of_type("numeric")
                        if isinstance(c.bucketize, int)}
        self.rows = 0

    def add(self, batch: pa.RecordBatch, train: np.ndarray, path: str, first_line: int) -> None:
        check_rows(self.spec, batch, path, first_line)
        self.rows += int(train.sum())
        rows = pa.array(train)
        for c in self.spec.columns:
            owner = self.spec.table_owner(c)
            if owner.name in self.counts:
                values = tokens(batch.column(c.name).filter(rows), c)
                if c.is_list:
                    values = pc.list_flatten(values)
                _count(self.counts[owner.name], values)
            elif c.name in self.moments:
                x = batch.column(c.name).filter(rows).drop_null().cast(pa.float64()).to_numpy(zero_copy_only=False)
                self.moments[c.name].add(x)
                if c.name in self.samples:
                    self.samples[c.name].add(x)

    def fit(self) -> TableTransform:
        if not self.rows:
            raise DataError(f"{self.spec.source}: the training split has no rows")
        vocabularies = {}
        for name, counts in self.counts.items():
            kept = sorted(((n, v) for v, n in counts.items() if n >= self.spec.column(name).min_count),
                          key=lambda nv: (-nv[0], nv[1]))
            vocabularies[name] = Vocabulary([v for _, v in kept], [n for n, _ in kept])
        numeric = {}
        for name, m in self.moments.items():
            c = self.spec.column(name)
            std = math.sqrt(m.m2 / m.n) if m.n else 0.0
            fitted = {"mean": m.mean if m.n else 0.0, "std": std or 1.0,
                      "min": m.lo if m.n else 0.0, "max": m.hi if m.n else 1.0}
            fitted["fill"] = fitted["mean"] if c.fill == "mean" else float(c.fill)
            if isinstance(c.bucketize, int):
                sample = self.samples[name].values
                q = np.quantile(sample, np.linspace(0, 1, c.bucketize + 1)[1:-1]) if len(sample) else []
                fitted["boundaries"] = sorted({float(b) for b in q})
            elif c.bucketize is not None:
                fitted["boundaries"] = list(c.bucketize)
            numeric[name] = fitted
        return TableTransform(self.spec, vocabularies, numeric)


def _count(counts: dict[str, int], values: pa.Array) -> None:
    values = values.drop_null()
    if not len(values):
        return
    vc = pc.value_counts(values)
    for v, n in zip(vc.field(0).to_pylist(), vc.field(1).to_pylist()):
        counts[v] = counts.get(v, 0) + n


def check_rows(spec: TableSpec, batch: pa.RecordBatch, path: str, first_line: int) -> None:
    """Labels present and (binary ones) in [0, 1]; times readable. A DataError names the line."""
    for c in spec.of_type("label"):
        y = batch.column(c.name).cast(pa.float64())
        bad = y.is_null()
        if c.binary:
            bad = pc.or_(bad, pc.or_(pc.less(y, 0), pc.greater(y, 1)).fill_null(False))
        hits = np.flatnonzero(bad.to_numpy(zero_copy_only=False))
        if len(hits):
            value = y[int(hits[0])].as_py()
            expected = "a click/conversion label in [0, 1]" if c.binary else "a number"
            raise DataError(f"{path}: label '{c.name}' on line {first_line + int(hits[0])} is "
                            f"{'empty' if value is None else repr(value)}; expected {expected}")
    for c in spec.of_type("timestamp"):
        time_values(batch.column(c.name), path, c.name, first_line)


# --- the fitted transform -------------------------------------------------------------------------


@dataclass
class Vocabulary:
    """Raw values -> ids FIRST_ID.. (by falling count); unknown -> OOV, missing -> MISSING."""

    values: list[str]
    counts: list[int]
    _ids: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def num_embeddings(self) -> int:
        return len(self.values) + FIRST_ID

    def encode(self, values: pa.Array) -> np.ndarray:
        if not self._ids:
            self._ids = {v: i + FIRST_ID for i, v in enumerate(self.values)}
        get = self._ids.get
        return map_dictionary(values, lambda d: np.fromiter((get(v, OOV) for v in d.to_pylist()), np.int64, len(d)))


class TableTransform:
    def __init__(self, spec: TableSpec, vocabularies: dict[str, Vocabulary], numeric: dict[str, dict]) -> None:
        self.spec, self.vocabularies, self.numeric = spec, vocabularies, numeric
        self.hashers = {c.name: Hasher(c.hash_buckets) for c in spec.columns if c.hash_buckets}

    # --- what is written ---
    @property
    def group_column(self) -> str | None:
        key = self.spec.group_key
        if key is None:
            return None
        return f"{key}_group" if key in [c.name for c in self.spec.columns] else key

    def encoder(self, c: ColumnSpec):
        owner = self.spec.table_owner(c)
        return self.hashers.get(owner.name) or self.vocabularies[owner.name]

    def num_embeddings(self, c: ColumnSpec) -> int:
        if c.type == "numeric":
            return len(self.numeric[c.name]["boundaries"]) + 2  # missing, then one id per bucket
        return self.encoder(c).num_embeddings

    def arrow_schema(self) -> pa.Schema:
        fields = []
        for c in self.spec.columns:
            if c.is_list:
                kind = pa.list_(pa.int64())
            elif c.is_ids:
                kind = pa.int64()
            else:
                kind = {"numeric": pa.float32(), "label": pa.float32(), "timestamp": pa.float64()}[c.type]
            fields.append(pa.field(c.name, kind))
        if self.group_column:
            fields.append(pa.field(self.group_column, pa.int64()))
        return pa.schema(fields)

    def feature_schema(self) -> FeatureSchema:
        sparse, sequence = [], []
        for c in self.spec.columns:
            if c.type == "sequence":
                sequence.append(SequenceField(c.name, table=c.share, max_len=c.max_len,
                                              num_embeddings=None if c.share else self.num_embeddings(c)))
            elif c.is_ids:
                sparse.append(SparseField(c.name, self.num_embeddings(c), hash=c.name in self.hashers,
                                          multi_hot=c.is_list, table=c.share))
        labels = self.spec.of_type("label")
        return FeatureSchema(
            sparse=tuple(sparse), sequence=tuple(sequence),
            dense=tuple(c.name for c in self.spec.of_type("numeric") if c.bucketize is None),
            labels=tuple(c.name for c in labels), binary_labels=tuple(c.name for c in labels if c.binary),
            group_key=self.group_column,
        )

    # --- mapping raw rows ---
    def encode(self, raw: pa.Table | pa.RecordBatch, path: str = "<rows>", first_line: int = 1) -> pa.Table:
        """Raw rows (source column names and values) -> the imported columns."""
        if isinstance(raw, pa.Table):
            raw = raw.combine_chunks().to_batches()[0] if raw.num_rows else pa.RecordBatch.from_pylist([], raw.schema)
        missing = [n for n in self.spec.source_columns if n not in raw.schema.names]
        if missing:
            raise DataError(f"{path}: raw rows lack column(s) {missing}")
        raw = self._numbers_as_floats(raw, path, first_line)
        check_rows(self.spec, raw, path, first_line)
        cols = {}
        for c in self.spec.columns:
            arr = raw.column(c.name)
            if c.is_list:
                cols[c.name] = self._encode_lists(tokens(arr, c), c)
            elif c.type in ("categorical",):
                cols[c.name] = self.encoder(c).encode(tokens(arr, c))
            elif c.type == "numeric":
                cols[c.name] = self._numeric(arr, c)
            elif c.type == "label":
                cols[c.name] = arr.cast(pa.float32())
            else:
                cols[c.name] = time_values(arr, path, c.name, first_line)
        if self.group_column:
            cols[self.group_column] = stable_group_ids(raw.column(self.spec.group_key))
        return pa.table(cols, schema=self.arrow_schema())

    def _numbers_as_floats(self, raw: pa.RecordBatch, path: str, first_line: int) -> pa.RecordBatch:
        """Numeric and label columns as float64 (raw rows may carry them as text; "" is missing)."""
        arrays = []
        for name in raw.schema.names:
            arr = raw.column(name)
            kind = self.spec.column(name).type if name in [c.name for c in self.spec.columns] else None
            if kind in ("numeric", "label") and not pa.types.is_floating(arr.type):
                if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
                    arr = pc.if_else(pc.equal(pc.utf8_trim_whitespace(arr), ""), pa.scalar(None, arr.type), arr)
                try:
                    arr = arr.cast(pa.float64())
                except pa.ArrowInvalid as exc:
                    raise DataError(f"{path}: column '{name}' (rows from line {first_line}): {exc}; "
                                    "expected numbers") from None
            arrays.append(arr)
        return pa.RecordBatch.from_arrays(arrays, names=raw.schema.names)

    def _encode_lists(self, lists: pa.ListArray, c: ColumnSpec) -> pa.Array:
        lists = lists.fill_null(pa.scalar([], pa.list_(pa.string())))
        ids = self.encoder(c).encode(pc.list_flatten(lists))
        offsets = lists.offsets.to_numpy() - lists.offsets[0].as_py()
        if c.type == "sequence":  # the last max_len tokens: the most recent, as the reader keeps them
            starts = np.maximum(offsets[:-1], offsets[1:] - c.max_len)
            keep = np.repeat(starts - offsets[:-1], np.diff(offsets))  # tokens dropped before each row
            position = np.arange(len(ids)) - np.repeat(offsets[:-1], np.diff(offsets))
            ids = ids[position >= keep]
            offsets = np.r_[0, np.cumsum(offsets[1:] - starts)]
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(ids, pa.int64()))

    def _numeric(self, arr: pa.Array, c: ColumnSpec) -> np.ndarray:
        fitted = self.numeric[c.name]
        x = arr.cast(pa.float64())
        if c.bucketize is not None:
            values = x.fill_null(np.nan).to_numpy(zero_copy_only=False)
            ids = np.searchsorted(np.asarray(fitted["boundaries"]), values, side="right") + 1
            return np.where(np.isnan(values), MISSING, ids).astype(np.int64)
        v = x.fill_null(fitted["fill"]).to_numpy(zero_copy_only=False)
        if c.normalize == "standard":
            v = (v - fitted["mean"]) / fitted["std"]
        elif c.normalize == "minmax":
            v = (v - fitted["min"]) / ((fitted["max"] - fitted["min"]) or 1.0)
        elif c.normalize == "log":
            v = np.log1p(np.maximum(v, 0.0))
        return v.astype(np.float32)

    # --- files ---
    def transform_yaml(self) -> str:
        fitted = {name: {k: v for k, v in f.items()} for name, f in self.numeric.items()}
        tables = {c.name: self.num_embeddings(c) for c in self.spec.columns if c.is_ids}
        return yaml.safe_dump({
            "id_layout": {"missing": MISSING, "out_of_vocabulary": OOV, "first_value": FIRST_ID},
            "spec": self.spec.to_dict(), "numeric": fitted, "num_embeddings": tables,
            "vocabularies": {name: f"{VOCABULARY_DIR}/{name}.parquet" for name in self.vocabularies},
        }, sort_keys=False)

    def vocabulary_tables(self) -> dict[str, pa.Table]:
        return {f"{VOCABULARY_DIR}/{name}.parquet": pa.table({
            "value": pa.array(v.values, pa.string()),
            "id": pa.array(np.arange(FIRST_ID, v.num_embeddings), pa.int64()),
            "count": pa.array(v.counts, pa.int64()),
        }) for name, v in self.vocabularies.items()}


def load_transform(out: str) -> TableTransform:
    """The transform an import wrote to ``out``, to encode new raw rows the same way."""
    fs, root = filesystem(out.rstrip("/"))
    try:
        with fs.open(f"{root}/{TRANSFORM_FILE}", "r") as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise DataError(f"{out}: no {TRANSFORM_FILE}; it is written by `distrec data import table`") from None
    spec = parse_spec(raw["spec"], source=f"{out}/{TRANSFORM_FILE}")
    vocabularies = {}
    for name, rel in raw["vocabularies"].items():
        with fs.open(f"{root}/{rel}", "rb") as fh:
            table = pq.read_table(fh)
        vocabularies[name] = Vocabulary(table["value"].to_pylist(), table["count"].to_pylist())
    return TableTransform(spec, vocabularies, raw["numeric"])
