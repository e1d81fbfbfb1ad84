"""Arrow record batches -> RecBatch, vectorised with numpy (no per-row Python).

Conversion has two steps so a reader can decode big Arrow chunks and cut many batches from
each: ``decode_rows`` turns Arrow columns into numpy arrays once per chunk (of rows that
``validate.find_bad_rows`` passed), and ``assemble`` builds a RecBatch from row ranges of one or
more decoded chunks (slices and one concatenation of the ids, which a KeyedJaggedTensor needs
contiguous anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from distrec.data.batch import RecBatch
from distrec.data.schema import FeatureSchema
from distrec.data.validate import column_array, find_bad_rows, id_fields, int64_values
from distrec.errors import DataError

_INT64 = pa.int64()
_FLOAT32 = pa.float32()


# --- schema check ------------------------------------------------------------------------------


def _is_int(t: pa.DataType) -> bool:
    return pa.types.is_integer(t)


def _is_int_list(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_int(t.value_type)


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def column_roles(schema: FeatureSchema) -> list[tuple[str, str, str, object]]:
    """(column, role, expected type in words, type predicate) for every column the schema reads."""
    roles: list[tuple[str, str, str, object]] = []
    for f in schema.sparse:
        if f.multi_hot:
            roles.append((f.name, "multi_hot sparse field", "list<int64>", _is_int_list))
        else:
            roles.append((f.name, "sparse field", "an integer type (int64)", _is_int))
    for s in schema.sequence:
        roles.append((s.name, "sequence field", "list<int64>", _is_int_list))
    for d in schema.dense:
        roles.append((d, "dense field", "a numeric type (float32)", _is_numeric))
    for lab in schema.labels:
        roles.append((lab, "label", "a numeric type (float32/int)", _is_numeric))
    if schema.group_key and schema.group_key not in {r[0] for r in roles}:
        roles.append((schema.group_key, "group_key", "an integer type (int64)", _is_int))
    return roles


def check_file_schema(arrow_schema: pa.Schema, schema: FeatureSchema, source: str) -> None:
    """Raise DataError unless ``source`` has every column the schema needs, each of a usable type."""
    names = set(arrow_schema.names)
    for col, role, expected, ok in column_roles(schema):
        if col not in names:
            raise DataError(
                f"{source}: column '{col}' ({role} in feature schema {schema.source}) is missing; "
                f"the file has columns {sorted(names)}"
            )
        actual = arrow_schema.field(col).type
        if not ok(actual):
            raise DataError(
                f"{source}: column '{col}' ({role} in feature schema {schema.source}) has Arrow "
                f"type {actual}, expected {expected}"
            )


def arrow_schema(schema: FeatureSchema) -> pa.Schema:
    """The Arrow types ``decode_rows`` reads without a cast; check_file_schema-valid files cast to it."""
    types = {f.name: pa.list_(_INT64) if f.multi_hot else _INT64 for f in schema.sparse}
    types.update({s.name: pa.list_(_INT64) for s in schema.sequence})
    types.update({d: _FLOAT32 for d in schema.dense})
    types.update({lab: _FLOAT32 for lab in schema.labels})
    if schema.group_key and schema.group_key not in types:
        types[schema.group_key] = _INT64
    return pa.schema([(name, types[name]) for name in schema.columns])


# --- conversion --------------------------------------------------------------------------------


@dataclass
class DecodedRows:
    """Rows of one Arrow batch as numpy. Sparse key k: ``values[k]`` holds its ids, and row i's
    ids are ``values[k][offsets[k][i]:offsets[k][i + 1]]`` (``offsets[k]`` None: one id per row)."""

    num_rows: int
    values: list[np.ndarray]
    offsets: list[np.ndarray | None]
    dense: np.ndarray  # [n, n_dense] float32
    labels: np.ndarray  # [n, n_labels] float32
    group_ids: np.ndarray  # [n] int64


def _floats(arr: pa.Array) -> np.ndarray:
    if arr.type != _FLOAT32:
        arr = arr.cast(_FLOAT32)
    if arr.null_count:
        arr = arr.fill_null(0.0)
    return arr.to_numpy(zero_copy_only=False)


def _list_ids(arr: pa.Array, max_len: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, row offsets into ids) of a list column; sequences keep their last max_len items."""
    offsets = arr.offsets.to_numpy().astype(np.int64)  # already shifted for sliced arrays
    start, end = int(offsets[0]), int(offsets[-1])
    values = int64_values(arr.values.slice(start, end - start))
    rel = offsets - start
    if max_len is None or len(rel) < 2 or np.diff(rel).max() <= max_len:
        return values, rel
    row_end = np.repeat(rel[1:], np.diff(rel))
    keep = np.arange(end - start) >= row_end - max_len  # the last max_len items of each row
    kept = np.concatenate(([0], np.cumsum(keep, dtype=np.int64)))
    return values[keep], kept[rel]


def decode_rows(batch: pa.RecordBatch | pa.Table, schema: FeatureSchema) -> DecodedRows:
    """Arrow columns -> numpy arrays, for rows ``find_bad_rows`` passed (no null ids, labels or
    dense values; ids in range)."""
    n = batch.num_rows
    values: list[np.ndarray] = []
    offsets: list[np.ndarray | None] = []
    for f in id_fields(schema):
        arr = column_array(batch, f.column)
        ids, offs = _list_ids(arr, f.max_len) if f.is_list else (int64_values(arr), None)
        if f.hashed:
            ids = np.mod(ids, f.num_embeddings)
        values.append(ids)
        offsets.append(offs)
    dense = np.empty((n, len(schema.dense)), dtype=np.float32)
    for j, name in enumerate(schema.dense):
        dense[:, j] = _floats(column_array(batch, name))
    labels = np.empty((n, len(schema.labels)), dtype=np.float32)
    for j, name in enumerate(schema.labels):
        labels[:, j] = _floats(column_array(batch, name))
    if schema.group_key:
        group_ids = np.array(int64_values(column_array(batch, schema.group_key)))  # a writable copy for torch
    else:
        group_ids = np.zeros(n, dtype=np.int64)
    return DecodedRows(n, values, offsets, dense, labels, group_ids)


def _rows(parts: list[tuple[DecodedRows, int, int]], attr: str) -> np.ndarray:
    arrays = [getattr(d, attr)[r0:r1] for d, r0, r1 in parts]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def assemble(parts: list[tuple[DecodedRows, int, int]], schema: FeatureSchema) -> RecBatch:
    """A RecBatch of rows ``r0:r1`` of each decoded chunk, in order."""
    n = sum(r1 - r0 for _, r0, r1 in parts)
    keys = schema.sparse_names
    pieces: list[np.ndarray] = []
    lengths = np.ones(len(keys) * n, dtype=np.int32)  # scalar ids without nulls: one per row
    for k in range(len(keys)):
        row = k * n
        for d, r0, r1 in parts:
            offs = d.offsets[k]
            if offs is None:
                pieces.append(d.values[k][r0:r1])
            else:
                pieces.append(d.values[k][offs[r0] : offs[r1]])
                lengths[row : row + r1 - r0] = np.diff(offs[r0 : r1 + 1])
            row += r1 - r0
    sparse = KeyedJaggedTensor(
        keys=keys,
        values=torch.from_numpy(np.concatenate(pieces) if pieces else np.zeros(0, np.int64)),
        lengths=torch.from_numpy(lengths),
        stride=n,
    )
    return RecBatch(
        dense=torch.from_numpy(_rows(parts, "dense")),
        sparse=sparse,
        labels=torch.from_numpy(_rows(parts, "labels")),
        weights=torch.ones(n, dtype=torch.float32),
        group_ids=torch.from_numpy(_rows(parts, "group_ids")),
    )


def arrow_to_batch(batch: pa.RecordBatch | pa.Table, schema: FeatureSchema, source: str) -> RecBatch:
    """Convert rows read from ``source`` into a RecBatch keyed by ``schema.sparse_names``; a bad
    value is a DataError naming ``source``, the column, the value and its row."""
    bad = find_bad_rows(batch, schema)
    if bad is not None:
        raise DataError(bad.describe(f"{source}, row {bad.first.row}"))
    return assemble([(decode_rows(batch, schema), 0, batch.num_rows)], schema)
