"""Arrow record batches -> RecBatch, vectorised with numpy (no per-row Python)."""

from __future__ import annotations

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


# --- conversion --------------------------------------------------------------------------------


def _columns(batch: pa.RecordBatch | pa.Table) -> dict[str, list[pa.Array]]:
    # Batches cut across row groups arrive as several chunks; each is converted in place and the
    # pieces joined by the one concatenation a KJT needs anyway, never by an extra Arrow copy.
    cols = batch.columns
    if isinstance(batch, pa.Table):
        return {name: col.chunks for name, col in zip(batch.column_names, cols)}
    return {name: [col] for name, col in zip(batch.schema.names, cols)}


def _ints(arr: pa.Array) -> np.ndarray:
    if arr.type != _INT64:
        arr = arr.cast(_INT64)
    if arr.null_count:
        arr = arr.fill_null(0)
    return arr.to_numpy(zero_copy_only=False)


def _floats(chunks: list[pa.Array]) -> np.ndarray:
    parts = []
    for arr in chunks:
        if arr.type != _FLOAT32:
            arr = arr.cast(_FLOAT32)
        if arr.null_count:
            arr = arr.fill_null(0.0)
        parts.append(arr.to_numpy(zero_copy_only=False))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


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
        return values, lengths
    kept = np.concatenate(([0], np.cumsum(keep, dtype=np.int64)))
    return values[keep], kept[rel[1:]] - kept[rel[:-1]]


def _sparse_fields(schema: FeatureSchema) -> list[tuple[str, int, bool, bool, int | None]]:
    """(column, num_embeddings, hash, is_list, max_len) in KJT key order."""
    fields = [(f.name, f.num_embeddings, f.hash, f.multi_hot, None) for f in schema.sparse]
    for s in schema.sequence:
        owner = schema.field(s.table)
        fields.append((s.name, owner.num_embeddings, owner.hash, True, s.max_len))
    return fields


def _check_ranges(values: np.ndarray, key_sizes: list[int], fields: list, source: str) -> None:
    """One vectorised pass over the joined values; hashed keys are already in range."""
    starts = np.concatenate(([0], np.cumsum(key_sizes)[:-1]))
    nonempty = np.flatnonzero(np.asarray(key_sizes) > 0)
    if not len(nonempty):
        return
    # as uint64, a negative id is huge: one max per key catches both ends
    hi = np.maximum.reduceat(values.view(np.uint64), starts[nonempty])
    bound = np.array([fields[k][1] for k in nonempty], dtype=np.uint64)
    bad = np.flatnonzero(hi >= bound)
    if len(bad):
        k = nonempty[bad[0]]
        name, num_embeddings = fields[k][:2]
        key_values = values[starts[k] : starts[k] + key_sizes[k]]
        lo = int(key_values.min())
        value = lo if lo < 0 else int(key_values.max())
        raise DataError(
            f"{source}: column '{name}' has id {value} outside [0, {num_embeddings}) "
            f"(num_embeddings={num_embeddings}); raise num_embeddings or set hash: true"
        )


def arrow_to_batch(batch: pa.RecordBatch | pa.Table, schema: FeatureSchema, source: str) -> RecBatch:
    """Convert rows read from ``source`` into a RecBatch keyed by ``schema.sparse_names``."""
    n = batch.num_rows
    columns = _columns(batch)
    fields = _sparse_fields(schema)
    pieces: list[np.ndarray] = []
    key_sizes: list[int] = []
    lengths = np.ones(len(fields) * n, dtype=np.int32)  # scalar ids without nulls: one per row
    for k, (name, num_embeddings, hashed, is_list, max_len) in enumerate(fields):
        size, row = 0, k * n
        for arr in columns[name]:
            if is_list:
                ids, lens = _list_ids(arr, max_len)
                lengths[row : row + len(arr)] = lens
            else:
                ids = _ints(arr)
                if arr.null_count:
                    valid = arr.is_valid().to_numpy(zero_copy_only=False)
                    ids = ids[valid]
                    lengths[row : row + len(arr)] = valid
            if hashed:
                ids = np.mod(ids, num_embeddings)
            pieces.append(ids)
            size += len(ids)
            row += len(arr)
        key_sizes.append(size)
    values = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
    _check_ranges(values, key_sizes, fields, source)
    sparse = KeyedJaggedTensor(
        keys=schema.sparse_names,
        values=torch.from_numpy(values),
        lengths=torch.from_numpy(lengths),
        stride=n,
    )

    dense = np.empty((n, len(schema.dense)), dtype=np.float32)
    for j, name in enumerate(schema.dense):
        dense[:, j] = _floats(columns[name])
    labels = np.empty((n, len(schema.labels)), dtype=np.float32)
    for j, name in enumerate(schema.labels):
        chunks = columns[name]
        nulls = sum(c.null_count for c in chunks)
        if nulls:
            raise DataError(f"{source}: label column '{name}' has {nulls} null value(s)")
        labels[:, j] = _floats(chunks)
    if schema.group_key:
        group_ids = np.concatenate([_ints(c) for c in columns[schema.group_key]])
    else:
        group_ids = np.zeros(n, dtype=np.int64)
    return RecBatch(
        dense=torch.from_numpy(dense),
        sparse=sparse,
        labels=torch.from_numpy(labels),
        weights=torch.ones(n, dtype=torch.float32),
        group_ids=torch.from_numpy(group_ids),
    )
