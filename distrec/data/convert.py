"""Arrow record batches -> RecBatch, vectorised with numpy (no per-row Python)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from distrec.data.batch import RecBatch
from distrec.data.schema import FeatureSchema
from distrec.errors import DataError


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


# --- conversion --------------------------------------------------------------------------------


def _array(batch: pa.RecordBatch | pa.Table, name: str) -> pa.Array:
    col = batch.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.chunks[0] if col.num_chunks == 1 else pa.concat_arrays(col.chunks)
    return col


def _ints(arr: pa.Array) -> np.ndarray:
    if arr.type != pa.int64():
        arr = arr.cast(pa.int64())
    if arr.null_count:
        arr = arr.fill_null(0)
    return arr.to_numpy(zero_copy_only=False)


def _floats(arr: pa.Array) -> np.ndarray:
    if arr.type != pa.float32():
        arr = arr.cast(pa.float32())
    if arr.null_count:
        arr = arr.fill_null(0.0)
    return arr.to_numpy(zero_copy_only=False)


def _scalar_ids(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    ids = _ints(arr)
    if not arr.null_count:
        return ids, np.ones(len(ids), dtype=np.int32)
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    return ids[valid], valid.astype(np.int32)


def _list_ids(arr: pa.Array, max_len: int | None) -> tuple[np.ndarray, np.ndarray]:
    offsets = arr.offsets.to_numpy().astype(np.int64)  # already shifted for sliced arrays
    start, end = int(offsets[0]), int(offsets[-1])
    child = arr.values.slice(start, end - start)
    rel = offsets - start
    lengths = np.diff(rel)
    keep = None
    if arr.null_count:  # a null list may still own child entries: drop them
        keep = np.repeat(arr.is_valid().to_numpy(zero_copy_only=False), lengths)
    if max_len is not None and len(lengths) and lengths.max() > max_len:
        row_end = np.repeat(rel[1:], lengths)
        last = np.arange(end - start) >= row_end - max_len  # the last max_len items of each row
        keep = last if keep is None else keep & last
    if child.null_count:
        valid = child.is_valid().to_numpy(zero_copy_only=False)
        keep = valid if keep is None else keep & valid
    values = _ints(child)
    if keep is None:
        return values, lengths.astype(np.int32)
    kept = np.concatenate(([0], np.cumsum(keep, dtype=np.int64)))
    return values[keep], (kept[rel[1:]] - kept[rel[:-1]]).astype(np.int32)


def _check_range(values: np.ndarray, num_embeddings: int, column: str, source: str) -> None:
    if not len(values):
        return
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= num_embeddings:
        bad = lo if lo < 0 else hi
        raise DataError(
            f"{source}: column '{column}' has id {bad} outside [0, {num_embeddings}) "
            f"(num_embeddings={num_embeddings}); raise num_embeddings or set hash: true"
        )


def arrow_to_batch(batch: pa.RecordBatch | pa.Table, schema: FeatureSchema, source: str) -> RecBatch:
    """Convert rows read from ``source`` into a RecBatch keyed by ``schema.sparse_names``."""
    n = batch.num_rows
    values: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    fields = [(f.name, f.num_embeddings, f.hash, f.multi_hot, None) for f in schema.sparse]
    for s in schema.sequence:
        owner = schema.field(s.table)
        fields.append((s.name, owner.num_embeddings, owner.hash, True, s.max_len))
    for name, num_embeddings, hashed, is_list, max_len in fields:
        arr = _array(batch, name)
        ids, lens = _list_ids(arr, max_len) if is_list else _scalar_ids(arr)
        if hashed:
            ids = np.mod(ids, num_embeddings)
        else:
            _check_range(ids, num_embeddings, name, source)
        values.append(ids)
        lengths.append(lens)
    sparse = KeyedJaggedTensor(
        keys=schema.sparse_names,
        values=torch.from_numpy(np.concatenate(values)),
        lengths=torch.from_numpy(np.concatenate(lengths)),
        stride=n,
    )

    dense = np.zeros((n, len(schema.dense)), dtype=np.float32)
    for j, name in enumerate(schema.dense):
        dense[:, j] = _floats(_array(batch, name))
    labels = np.empty((n, len(schema.labels)), dtype=np.float32)
    for j, name in enumerate(schema.labels):
        arr = _array(batch, name)
        if arr.null_count:
            raise DataError(f"{source}: label column '{name}' has {arr.null_count} null value(s)")
        labels[:, j] = _floats(arr)
    if schema.group_key:
        group_ids = torch.from_numpy(_ints(_array(batch, schema.group_key)).copy())
    else:
        group_ids = torch.zeros(n, dtype=torch.int64)
    return RecBatch(
        dense=torch.from_numpy(dense),
        sparse=sparse,
        labels=torch.from_numpy(labels),
        weights=torch.ones(n, dtype=torch.float32),
        group_ids=group_ids,
    )
