"""Arrow record batches -> RecBatch, vectorised with numpy (no per-row Python).

Conversion has two steps so a reader can decode big Arrow chunks and cut many batches from
each: ``decode_rows`` turns Arrow columns into checked numpy arrays once per chunk, and
``assemble`` builds a RecBatch from row ranges of one or more decoded chunks (slices and one
concatenation of the ids, which a KeyedJaggedTensor needs contiguous anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from distrec.data.batch import RecBatch
from distrec.data.schema import FeatureSchema
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


def _chunks(batch: pa.RecordBatch | pa.Table, name: str) -> pa.Array:
    col = batch.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.chunks[0] if col.num_chunks == 1 else pa.concat_arrays(col.chunks)
    return col


def _ints(arr: pa.Array) -> np.ndarray:
    if arr.type != _INT64:
        arr = arr.cast(_INT64)
    if arr.null_count:
        arr = arr.fill_null(0)
    return arr.to_numpy(zero_copy_only=False)


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
    child = arr.values.slice(start, end - start)
    rel = offsets - start
    keep = None
    if arr.null_count:  # a null list may still own child entries: drop them
        keep = np.repeat(arr.is_valid().to_numpy(zero_copy_only=False), np.diff(rel))
    if max_len is not None and len(rel) > 1 and np.diff(rel).max() > max_len:
        row_end = np.repeat(rel[1:], np.diff(rel))
        last = np.arange(end - start) >= row_end - max_len  # the last max_len items of each row
        keep = last if keep is None else keep & last
    if child.null_count:
        valid = child.is_valid().to_numpy(zero_copy_only=False)
        keep = valid if keep is None else keep & valid
    values = _ints(child)
    if keep is None:
        return values, rel
    kept = np.concatenate(([0], np.cumsum(keep, dtype=np.int64)))
    return values[keep], kept[rel]


def _sparse_fields(schema: FeatureSchema) -> list[tuple[str, int, bool, bool, int | None]]:
    """(column, num_embeddings, hash, is_list, max_len) in KJT key order."""
    fields = [(f.name, f.num_embeddings, f.hash, f.multi_hot, None) for f in schema.sparse]
    for s in schema.sequence:
        if s.owns_table:  # a table of its own: ids are checked against it, never hashed
            fields.append((s.name, s.num_embeddings, False, True, s.max_len))
            continue
        owner = schema.field(s.table)
        fields.append((s.name, owner.num_embeddings, owner.hash, True, s.max_len))
    return fields


def _check_range(ids: np.ndarray, num_embeddings: int, column: str, source: str) -> None:
    # as uint64 a negative id is huge, so one max catches both ends
    if len(ids) and ids.view(np.uint64).max() >= num_embeddings:
        lo = int(ids.min())
        bad = lo if lo < 0 else int(ids.max())
        raise DataError(
            f"{source}: column '{column}' has id {bad} outside [0, {num_embeddings}) "
            f"(num_embeddings={num_embeddings}); raise num_embeddings or set hash: true"
        )


def decode_rows(batch: pa.RecordBatch | pa.Table, schema: FeatureSchema, source: str) -> DecodedRows:
    """Arrow columns -> checked numpy arrays; errors name ``source``, the column and the value."""
    n = batch.num_rows
    values: list[np.ndarray] = []
    offsets: list[np.ndarray | None] = []
    for name, num_embeddings, hashed, is_list, max_len in _sparse_fields(schema):
        arr = _chunks(batch, name)
        if is_list:
            ids, offs = _list_ids(arr, max_len)
        else:
            ids, offs = _ints(arr), None
            if arr.null_count:
                valid = arr.is_valid().to_numpy(zero_copy_only=False)
                ids = ids[valid]
                offs = np.concatenate(([0], np.cumsum(valid, dtype=np.int64)))
        if hashed:
            ids = np.mod(ids, num_embeddings)
        else:
            _check_range(ids, num_embeddings, name, source)
        values.append(ids)
        offsets.append(offs)
    dense = np.empty((n, len(schema.dense)), dtype=np.float32)
    for j, name in enumerate(schema.dense):
        dense[:, j] = _floats(_chunks(batch, name))
    labels = np.empty((n, len(schema.labels)), dtype=np.float32)
    for j, name in enumerate(schema.labels):
        arr = _chunks(batch, name)
        if arr.null_count:
            raise DataError(f"{source}: label column '{name}' has {arr.null_count} null value(s)")
        labels[:, j] = _floats(arr)
    if schema.group_key:
        group_ids = np.array(_ints(_chunks(batch, schema.group_key)))  # a writable copy for torch
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
    """Convert rows read from ``source`` into a RecBatch keyed by ``schema.sparse_names``."""
    return assemble([(decode_rows(batch, schema, source), 0, batch.num_rows)], schema)
