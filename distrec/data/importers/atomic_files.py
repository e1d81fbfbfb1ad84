"""RecBole atomic files: locating them, their ``name:type`` headers, and the .item/.user side
tables turned into per-id feature columns.

Atomic files are tab-separated with a header such as ``user_id:token  age:token  class:token_seq``;
``token_seq`` values are space-separated tokens. ``float_seq`` columns are not imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distrec.data.importers.common import (
    Vocab,
    csv_batches,
    first_line,
    sparse_field_for,
)
from distrec.data.schema import SparseField
from distrec.errors import DataError
from distrec.storage import filesystem, full_url

_ARROW_TYPES = {"token": pa.string(), "token_seq": pa.string(), "float": pa.float64()}


@dataclass(frozen=True)
class AtomicFiles:
    inter: str
    item: str | None
    user: str | None


def find_atomic_files(src: str) -> AtomicFiles:
    """``src`` is the ``.inter`` file or a directory holding ``<dirname>.inter`` (or one ``*.inter``);
    ``.item``/``.user`` files with the same stem are picked up when present."""
    fs, path = filesystem(src)
    if path.endswith(".inter"):
        inter = path
    elif fs.isdir(path):
        named = f"{path.rstrip('/')}/{os.path.basename(path.rstrip('/'))}.inter"
        found = [named] if fs.isfile(named) else sorted(fs.glob(f"{path.rstrip('/')}/*.inter"))
        if len(found) != 1:
            raise DataError(
                f"{src}: expected one RecBole '.inter' file in the directory, found {len(found)} "
                f"({found}); pass the .inter file itself"
            )
        inter = found[0]
    else:
        raise DataError(f"RecBole dataset not found: {src} (expected a .inter file or a directory)")
    if not fs.isfile(inter):
        raise DataError(f"RecBole interaction file not found: {full_url(fs, inter)}")
    stem = inter[: -len(".inter")]
    side = {ext: full_url(fs, stem + ext) if fs.isfile(stem + ext) else None for ext in (".item", ".user")}
    return AtomicFiles(full_url(fs, inter), side[".item"], side[".user"])


def read_header(path: str) -> list[tuple[str, str]]:
    """[(column, type)] from a ``name:type`` header line."""
    columns = []
    for raw in first_line(path).split("\t"):
        name, sep, kind = raw.strip().rpartition(":")
        if not sep or not name:
            raise DataError(
                f"{path}: header field {raw!r} is not 'name:type' (RecBole atomic file header)"
            )
        columns.append((name, kind))
    return columns


def atomic_batches(path: str, header: list[tuple[str, str]], columns: list[str],
                   types: dict[str, pa.DataType] | None = None):
    """Stream ``columns`` of an atomic file (string tokens, float64 floats unless ``types`` says)."""
    kinds = dict(header)
    wanted = {c: (types or {}).get(c) or _ARROW_TYPES[kinds[c]] for c in columns}
    return csv_batches(path, [n for n, _ in header], wanted, delimiter="\t", header_lines=1,
                       quoting=False)


def read_table(path: str, header: list[tuple[str, str]]) -> pa.Table:
    """A whole side file (.item/.user: one row per item/user, small next to .inter)."""
    columns = [n for n, kind in header if kind in _ARROW_TYPES]
    batches = list(atomic_batches(path, header, columns))
    if not batches:
        return pa.table({c: pa.array([], _ARROW_TYPES[dict(header)[c]]) for c in columns})
    return pa.Table.from_batches(batches)


def token_lists(values: pa.Array | pa.ChunkedArray) -> pa.ListArray:
    """Space-separated ``token_seq`` strings -> list<string>, empty tokens dropped, null -> []."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    lists = pc.split_pattern(values.fill_null(""), " ")
    flat = pc.list_flatten(lists)
    keep = pc.not_equal(flat, "")
    parents = pc.list_parent_indices(lists).to_numpy()[keep.to_numpy(zero_copy_only=False)]
    offsets = np.concatenate(([0], np.cumsum(np.bincount(parents, minlength=len(values)))))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), flat.filter(keep))


def _empty_to_null(strings: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(strings, ""), pa.scalar(None, pa.string()), strings)


@dataclass
class SideFeatures:
    """Features of one entity kind (items or users), as columns indexed by its mapped id
    (row 0, and any id absent from the side file, hold the missing value: id 0 / [] / 0.0)."""

    fields: list[SparseField] = field(default_factory=list)
    dense: list[str] = field(default_factory=list)
    columns: dict[str, pa.Array] = field(default_factory=dict)
    raw: dict[str, pa.Array] = field(default_factory=dict)  # raw_<col>: raw values by mapped id
    text: pa.Array | None = None

    def take(self, ids: np.ndarray) -> dict[str, pa.Array]:
        index = pa.array(ids)
        return {name: col.take(index) for name, col in self.columns.items()}


def side_features(
    table: pa.Table,
    header: list[tuple[str, str]],
    id_column: str,
    id_vocab: Vocab,
    name_for: Callable[[str], str],
    exclude: set[str],
    token_prefix: dict[str, int],
    text_columns: list[str] | None = None,
) -> SideFeatures:
    """Encode every token (sparse), token_seq (multi-hot) and float (dense) column of a side table.

    ``id_vocab`` must already hold every id of the table. ``exclude`` columns become raw/text only.
    """
    table = table.filter(pc.is_valid(table[id_column]))  # a row without id describes nothing
    n = id_vocab.num_embeddings
    ids = id_vocab.encode(table[id_column])
    pos = np.full(n, len(table), dtype=np.int64)  # len(table) = "no row": the appended default
    pos[ids] = np.arange(len(table))  # a repeated id: its last row wins
    by_id = pa.array(pos, mask=pos == len(table))
    side = SideFeatures()
    text_parts = []
    for col, kind in header:
        if col == id_column or kind not in _ARROW_TYPES:
            continue
        values = table[col].combine_chunks()
        side.raw[f"raw_{col}"] = values.take(by_id)
        is_list = kind == "token_seq" and col not in exclude  # excluded ones are free text
        lists = token_lists(values) if is_list else None
        if text_columns is not None and col in text_columns:
            text_parts.append((col, pc.binary_join(lists, ", ") if is_list else values.cast(pa.string())))
        if col in exclude:
            continue
        name = name_for(col)
        if kind == "token":
            if col in token_prefix:
                values = pc.utf8_slice_codeunits(values, 0, token_prefix[col])
            vocab = Vocab()
            vocab.add(values)
            side.columns[name] = pa.array(np.append(vocab.encode(values), 0)[pos])
            side.fields.append(sparse_field_for(name, vocab))
        elif kind == "token_seq":
            vocab = Vocab()
            vocab.add(lists.values)
            coded = pa.ListArray.from_arrays(lists.offsets, pa.array(vocab.encode(lists.values)))
            coded = pa.concat_arrays([coded, pa.array([[]], coded.type)])
            side.columns[name] = coded.take(pa.array(pos))
            side.fields.append(sparse_field_for(name, vocab, multi_hot=True))
        else:
            dense = values.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float32)
            side.columns[name] = pa.array(np.append(dense, np.float32(0))[pos])
            side.dense.append(name)
    if text_columns is not None:
        order = {c: i for i, c in enumerate(text_columns)}
        parts = [_empty_to_null(v) for c, v in sorted(text_parts, key=lambda p: order[p[0]])]
        joined = (pc.binary_join_element_wise(*parts, " | ", null_handling="skip") if parts
                  else pa.nulls(len(table), pa.string()))
        side.text = joined.take(by_id)
    return side
