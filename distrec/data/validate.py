"""Value checks on rows as they are read: labels, dense values and ids the model can train on.

A bad value found late costs a run (a NaN loss that names no file, ids that index past a table)
or quietly skews it (labels of 7 under a BCE loss, null ids dropped from their bags), so every
decoded chunk is checked here before it becomes tensors. The common case, a clean chunk, costs a
null count and a min/max per column; only a chunk that fails those finds its bad rows one by one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distrec.data.schema import FeatureSchema

_INT64 = pa.int64()
log = logging.getLogger("distrec")


class IdField(NamedTuple):
    column: str
    num_embeddings: int
    hashed: bool  # ids are taken modulo num_embeddings, so any integer is usable
    is_list: bool
    max_len: int | None  # sequences keep their last max_len ids


def id_fields(schema: FeatureSchema) -> list[IdField]:
    """The id columns in KeyedJaggedTensor key order, with the table each is looked up in."""
    fields = [IdField(f.name, f.num_embeddings, f.hash, f.multi_hot, None) for f in schema.sparse]
    for s in schema.sequence:
        if s.owns_table:  # a table of its own: ids are checked against it, never hashed
            fields.append(IdField(s.name, s.num_embeddings, False, True, s.max_len))
            continue
        owner = schema.field(s.table)
        fields.append(IdField(s.name, owner.num_embeddings, owner.hash, True, s.max_len))
    return fields


@dataclass(frozen=True)
class BadValue:
    column: str
    role: str  # "label", "dense field", ...
    expected: str
    value: object  # an example: the first bad value of the first bad row (None: null)
    row: int  # in the checked chunk


@dataclass(frozen=True)
class BadRows:
    mask: np.ndarray  # [rows of the chunk] True where a row has any bad value
    first: BadValue

    @property
    def count(self) -> int:
        return int(self.mask.sum())

    def describe(self, where: str) -> str:
        """``where`` locates ``first.row`` (file, row group, row)."""
        b = self.first
        value = "null" if b.value is None else repr(b.value)
        return f"{where}: column '{b.column}' ({b.role}) has {value}, expected {b.expected}"


@dataclass
class SkippedRows:
    """Bad rows a stream dropped (data.on_bad_rows=skip), per file, logged with the first of each."""

    counts: dict[str, int] = field(default_factory=dict)
    first: dict[str, str] = field(default_factory=dict)

    def add(self, file: str, count: int, description: str) -> None:
        self.counts[file] = self.counts.get(file, 0) + count
        self.first.setdefault(file, description)

    def log_all(self) -> None:
        for file, count in self.counts.items():
            log.warning("skipped %d bad row(s) of %s (data.on_bad_rows=skip); the first: %s",
                        count, file, self.first[file])
        self.counts.clear()
        self.first.clear()


class _Finding(NamedTuple):
    bad: np.ndarray  # [rows] True where this column's value is bad
    column: str
    role: str
    expected: str
    values: pa.Array
    id_limit: int | None = None  # id columns: ids must lie below it (None: any id)


def find_bad_rows(batch: pa.RecordBatch | pa.Table, schema: FeatureSchema) -> BadRows | None:
    """None when every row of ``batch`` is usable; else which rows are not, and the first."""
    found = [f for f in _findings(batch, schema) if f.bad is not None and f.bad.any()]
    if not found:
        return None
    mask = np.logical_or.reduce([f.bad for f in found])
    row = int(np.argmax(mask))
    f = next(f for f in found if f.bad[row])
    value = f.values[row].as_py()
    if isinstance(value, list):  # the first bad id of the row's list
        value = next(v for v in value if v is None or (f.id_limit is not None and not 0 <= v < f.id_limit))
    return BadRows(mask, BadValue(f.column, f.role, f.expected, value, row))


def _findings(batch: pa.RecordBatch | pa.Table, schema: FeatureSchema):
    binary = set(schema.binary_labels)
    for name in schema.labels:
        arr = column_array(batch, name)
        if name in binary:
            yield _Finding(_bad_numbers(arr, 0.0, 1.0), name, "binary label", "a value in [0, 1]", arr)
        else:
            yield _Finding(_bad_numbers(arr, None, None), name, "label", "a finite, non-null value", arr)
    for name in schema.dense:
        arr = column_array(batch, name)
        yield _Finding(_bad_numbers(arr, None, None), name, "dense field", "a finite, non-null value", arr)
    for f in id_fields(schema):
        arr = column_array(batch, f.column)
        limit = None if f.hashed else f.num_embeddings
        sequence = f.max_len is not None
        fix = "raise it" if sequence else "raise it, or set hash: true"
        ids = "a non-null id" if limit is None else f"a non-null id in [0, {limit}) (num_embeddings={limit}: {fix})"
        if f.is_list:
            role = "sequence field" if sequence else "multi_hot sparse field"
            yield _Finding(_bad_id_lists(arr, limit), f.column, role, f"a list of which every item is {ids}",
                           arr, limit)
        else:
            yield _Finding(_bad_ids(arr, limit), f.column, "sparse field", ids, arr, limit)


def column_array(batch: pa.RecordBatch | pa.Table, name: str) -> pa.Array:
    col = batch.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.chunks[0] if col.num_chunks == 1 else pa.concat_arrays(col.chunks)
    return col


def _is_null(arr: pa.Array) -> np.ndarray:
    return arr.is_null().to_numpy(zero_copy_only=False)


def _bad_numbers(arr: pa.Array, lo: float | None, hi: float | None) -> np.ndarray | None:
    """Rows that are null, not finite or outside [lo, hi]; None when there are none."""
    if len(arr) == 0:
        return None
    if arr.null_count == 0:
        x = arr.to_numpy(zero_copy_only=False)
        first, last = x.min(), x.max()  # NaN propagates through both, inf shows in one
        if np.isfinite(first) and np.isfinite(last) and (lo is None or first >= lo) and (hi is None or last <= hi):
            return None
    x = arr.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
    bad = ~np.isfinite(x) | _is_null(arr)
    if lo is not None:
        bad |= (x < lo) | (x > hi)
    return bad


# as uint64 a negative id is huge: one comparison catches both ends of [0, limit)
def _out_of_range(ids: np.ndarray, limit: int) -> np.ndarray:
    return ids.view(np.uint64) >= limit


def _all_in_range(ids: np.ndarray, limit: int | None) -> bool:
    return limit is None or not len(ids) or ids.view(np.uint64).max() < limit


def int64_values(arr: pa.Array) -> np.ndarray:
    """An integer column as int64 numpy, nulls as 0 (find_bad_rows reports them)."""
    if arr.type != _INT64:
        arr = arr.cast(_INT64)
    return arr.fill_null(0).to_numpy(zero_copy_only=False) if arr.null_count else arr.to_numpy()


def _bad_ids(arr: pa.Array, limit: int | None) -> np.ndarray | None:
    """Rows whose id is null or outside [0, limit) (limit None: any id); None when there are none."""
    ids = int64_values(arr)
    in_range = _all_in_range(ids, limit)
    if arr.null_count == 0 and in_range:
        return None
    bad = _is_null(arr)
    if not in_range:
        bad |= _out_of_range(ids, limit)
    return bad


def _bad_id_lists(arr: pa.Array, limit: int | None) -> np.ndarray | None:
    """Rows whose list is null or holds a null id or one outside [0, limit); None when none do."""
    items = pc.list_flatten(arr)  # of non-null lists only; respects a sliced array's offsets
    ids = int64_values(items)
    in_range = _all_in_range(ids, limit)
    if arr.null_count == 0 and items.null_count == 0 and in_range:
        return None
    bad_item = _is_null(items)
    if not in_range:
        bad_item |= _out_of_range(ids, limit)
    bad = _is_null(arr)
    parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
    bad[parents[bad_item]] = True
    return bad
