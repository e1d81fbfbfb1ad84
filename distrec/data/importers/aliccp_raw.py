"""The original Ali-CCP release (Tianchi data set 408, the ESMM paper's data) -> distrec Parquet.

Input: a directory (local or any fsspec URL) holding the extracted release, plain or ``.gz``:

* ``sample_skeleton_{train,test}.csv``: one impression per line, ``sample_id, click, purchase,
  common_feature_index, feature_num, feature_list`` (no header);
* ``common_features_{train,test}.csv``: ``common_feature_index, feature_num, feature_list``, the
  features many impressions share (the user side), joined to the skeleton by that md5 index.

A feature_list holds features separated by ``\\x01``, each ``field \\x02 feature_id \\x03 value``.

Output: the layout of the preprocessed-CSV importer (``aliccp``), so the EGEAN configs work with
only the data paths changed: ``train/ valid/ test/part-*.parquet`` with an ``f_<field>`` column
for each of the 23 fields (:data:`FIELDS`), ``click`` and ``purchase`` float32 labels, and
``schema.yaml`` written last (group_key ``f_101``). Fields with one id per row are int64 ids
(0 = absent). The multi-valued fields (:data:`MULTI_VALUED`: behaviour and combination features)
are ``multi_hot`` list<int64> columns keeping the ``max_ids_per_field`` ids of largest value,
largest first (ties in file order), plus a float32 ``d_<field>`` holding the largest value (0 if
none); with ``max_ids_per_field=1`` that is the preprocessed layout's "id + D-value" pair. A
single-valued field listed twice in a row keeps its largest-valued id. A field may come from
either file; where a skeleton line has it, the line's ids win over the common record's.

Ids: as in ``aliccp``, a first streaming pass builds one vocabulary per field (1..n in order of
first appearance over train then test), a field reaching ``max_vocab`` ids switches to hashing,
and ``hash_all=True`` hashes everything in a single pass.

Splits: the release has train and test only. ``valid`` takes ``valid_share`` of train's rows,
chosen by a hash of sample_id seeded with ``seed`` (deterministic, no extra pass); ``test`` comes
from the test files when they are present.

Memory: skeleton files are streamed in blocks of about 8 MiB of text and never held whole. The
common-features file of the split being read is held in columnar form: per row the md5 key, 9
single ids and, per multi-valued field, at most ``max_ids_per_field`` ids and one value, i.e.
about ``(9 + 4 * (max_ids_per_field + 1)) * 8`` bytes of Arrow data plus ~150 bytes of key, or
~0.7 GB for the ~730k-row train file at the default 20 ids. One such store is held at a time;
the vocabulary pass reads train's then test's, and the writing pass starts with the test store
it holds, so the common files are parsed at most three times in all (twice with ``hash_all``).

Bad input is a DataError naming the file and line: a purchase without a click, an unknown
common_feature_index (unless ``missing_common="skip"``), a malformed feature (also of a field
outside the 23, which are otherwise skipped). ``feature_num`` is not compared with the features.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
from collections.abc import Iterator
from operator import itemgetter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from distrec.data.importers.aliccp import LABELS, USER_FIELD, learn_ids
from distrec.data.importers.common import (
    DEFAULT_ROW_GROUP_SIZE,
    DEFAULT_ROWS_PER_FILE,
    Hasher,
    ImportOutput,
    Progress,
    Vocab,
    WriteOptions,
    glob_files,
    sparse_field_for,
    text_blocks,
)
from distrec.data.schema import FeatureSchema
from distrec.errors import ConfigError, DataError
from distrec.storage import filesystem

# in the preprocessed CSV's column order, so both importers give the same columns
FIELDS = (
    "101", "121", "122", "124", "125", "126", "127", "128", "129",   # user id, profile
    "205", "206", "207", "210", "216",                               # item
    "508", "509", "702", "853",                                      # user x item combinations
    "301",                                                           # context
    "109_14", "110_14", "127_14", "150_14",                          # user behaviour
)
MULTI_VALUED = ("508", "509", "702", "853", "109_14", "110_14", "127_14", "150_14")
DENSE_ORDER = ("109_14", "110_14", "127_14", "150_14", "508", "509", "702", "853")

BLOCK_BYTES = 8 << 20  # text read per streamed block: bounds memory, large enough for throughput
DEFAULT_PATTERNS = {
    "skeleton_train": "sample_skeleton_train*",
    "common_train": "common_features_train*",
    "skeleton_test": "sample_skeleton_test*",
    "common_test": "common_features_test*",
}
_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")
_LABEL_VALUES = {"0": 0.0, "1": 1.0}
_WANTED = frozenset(FIELDS)
_MULTI = frozenset(MULTI_VALUED)
_VALUE = itemgetter(0)
_ID_LIST = pa.list_(pa.int64())


def import_aliccp_raw(
    src: str,
    out: str,
    *,
    skeleton_train: str = DEFAULT_PATTERNS["skeleton_train"],
    common_train: str = DEFAULT_PATTERNS["common_train"],
    skeleton_test: str = DEFAULT_PATTERNS["skeleton_test"],
    common_test: str = DEFAULT_PATTERNS["common_test"],
    max_ids_per_field: int = 20,
    valid_share: float = 0.1,
    seed: int = 0,
    missing_common: str = "error",
    max_vocab: int = 2_000_000,
    hash_all: bool = False,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    overwrite: bool = False,
    progress_every_s: float = 10.0,
) -> FeatureSchema:
    """Import the raw Ali-CCP release from the directory ``src`` into ``out``.

    skeleton_*/common_*: file names or globs relative to ``src`` (or absolute paths/URLs); several
    matching files are read in name order. The train files must exist; the test split is skipped
    when neither default test glob matches. missing_common: what a skeleton line whose
    common_feature_index is not in the common file does: ``"error"`` or ``"skip"`` the line.
    """
    _check_options(max_ids_per_field, valid_share, missing_common)
    opts = WriteOptions(row_group_size, rows_per_file, overwrite, progress_every_s)
    output = ImportOutput(out, opts)
    patterns = {"skeleton_train": skeleton_train, "common_train": common_train,
                "skeleton_test": skeleton_test, "common_test": common_test}
    splits = _find_splits(src, patterns)
    reader = _RawReader(max_ids_per_field, missing_common == "skip", progress_every_s)
    if hash_all:
        encoders = {f: Hasher(max_vocab) for f in FIELDS}
    else:
        encoders = _build_vocabs(splits, reader, max_vocab)
    arrow_schema = _arrow_schema()
    with output:
        for split in reversed(splits):  # starts with the common file the vocabulary pass holds
            _write_split(split, reader, encoders, output, arrow_schema, valid_share, seed)
        return output.finish(_feature_schema(encoders))


def _check_options(max_ids_per_field: int, valid_share: float, missing_common: str) -> None:
    if max_ids_per_field < 1:
        raise ConfigError(f"max_ids_per_field must be at least 1, got {max_ids_per_field}")
    if not 0.0 <= valid_share < 1.0:
        raise ConfigError(f"valid_share must be in [0, 1), got {valid_share}")
    if missing_common not in ("error", "skip"):
        raise ConfigError(f"missing_common must be 'error' or 'skip', got {missing_common!r}")


# --- input files -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Split:
    name: str
    skeletons: list[str]
    commons: list[str]


def _find_splits(src: str, patterns: dict[str, str]) -> list[_Split]:
    fs, path = filesystem(src)
    if not fs.isdir(path):
        raise DataError(
            f"Ali-CCP raw input not found: {src} (expected a directory holding "
            f"sample_skeleton_*.csv and common_features_*.csv)"
        )
    found = {key: _matching(src, pattern) for key, pattern in patterns.items()}
    _refuse_shared_files(found)
    splits = []
    for name in ("train", "test"):
        skeletons, commons = found[f"skeleton_{name}"], found[f"common_{name}"]
        defaults = all(patterns[k] == DEFAULT_PATTERNS[k] for k in (f"skeleton_{name}", f"common_{name}"))
        if name == "test" and defaults and not skeletons and not commons:
            continue
        for key, files in ((f"skeleton_{name}", skeletons), (f"common_{name}", commons)):
            if not files:
                raise DataError(
                    f"Ali-CCP raw {key} file not found: no file matches {patterns[key]!r} in {src} "
                    f"(extract the release's .tar.gz archives first)"
                )
        splits.append(_Split(name, skeletons, commons))
    return splits


def _matching(src: str, pattern: str) -> list[str]:
    absolute = "://" in pattern or pattern.startswith("/")
    files = glob_files(pattern if absolute else f"{src.rstrip('/')}/{pattern}")
    return [f for f in files if not f.endswith(_ARCHIVES)]  # archives lie beside extracted files


def _refuse_shared_files(found: dict[str, list[str]]) -> None:
    owner: dict[str, str] = {}
    for key, files in found.items():
        for f in files:
            if f in owner:
                raise DataError(f"Ali-CCP raw file {f} matches both the {owner[f]} and {key} patterns")
            owner[f] = key


def _line_blocks(path: str) -> Iterator[tuple[int, list[str]]]:
    """(number of the first line, lines without line ends) per ~BLOCK_BYTES of a text file, which
    may be compressed (inferred from its name) and remote."""
    for line_no, block in text_blocks(path, BLOCK_BYTES):
        yield line_no, block.decode("utf-8", errors="replace").split("\n")


# --- parsing -----------------------------------------------------------------------------------


def _parse_features(text: str, path: str, line_no: int) -> dict[str, list[tuple[float, int]]]:
    """The wanted fields of a feature_list: field -> [(value, id), ...] in file order."""
    found: dict[str, list[tuple[float, int]]] = {}
    if not text:
        return found
    for feature in text.split("\x01"):
        field, sep, rest = feature.partition("\x02")
        raw_id, sep2, raw_value = rest.partition("\x03")
        if not (sep and sep2):
            raise _malformed(path, line_no, feature)
        if field not in _WANTED:
            continue
        try:
            pair = (float(raw_value), int(raw_id))
        except ValueError:
            raise _malformed(path, line_no, feature) from None
        if field in found:
            found[field].append(pair)
        else:
            found[field] = [pair]
    return found


def _malformed(path: str, line_no: int, feature: str) -> DataError:
    return DataError(
        f"{path} line {line_no}: malformed feature {feature!r}; expected "
        f"'field\\x02feature_id\\x03value' with an integer id and a numeric value"
    )


@dataclasses.dataclass
class _Columns:
    """Rows' feature ids (int64, or list<int64> for multi-valued fields) and, per multi-valued
    field, the largest value (float32); null where a row lacks the field. Fields absent from
    every row may be left out."""

    ids: dict[str, pa.Array]
    tops: dict[str, pa.Array]


class _ColumnsBuilder:
    """Collects one block's parsed rows into :class:`_Columns`."""

    def __init__(self, capacity: int, max_ids: int) -> None:
        self.max_ids = max_ids
        self.ids: dict[str, list] = {f: [None] * capacity for f in FIELDS}
        self.tops: dict[str, list] = {f: [None] * capacity for f in MULTI_VALUED}

    def set_row(self, row: int, found: dict[str, list[tuple[float, int]]]) -> None:
        for field, pairs in found.items():
            if field in _MULTI:
                top = pairs if len(pairs) == 1 else heapq.nlargest(self.max_ids, pairs, key=_VALUE)
                self.ids[field][row] = [fid for _, fid in top]
                self.tops[field][row] = top[0][0]
            else:
                self.ids[field][row] = (pairs[0] if len(pairs) == 1 else max(pairs, key=_VALUE))[1]

    def columns(self, rows: int) -> _Columns:
        return _Columns(
            {f: pa.array(v[:rows], _ID_LIST if f in _MULTI else pa.int64()) for f, v in self.ids.items()},
            {f: pa.array(v[:rows], pa.float32()) for f, v in self.tops.items()},
        )


class _CommonStore:
    """One split's common features: md5 index -> row of columnar, truncated records."""

    def __init__(self, paths: list[str], max_ids: int, every_s: float) -> None:
        self.rows: dict[str, int] = {}
        self.source = ", ".join(paths)
        chunks: list[_Columns] = []
        for path in paths:
            progress = Progress(f"{path} (common features)", every_s)
            for first_no, lines in _line_blocks(path):
                chunks.append(self._parse_block(path, first_no, lines, max_ids))
                progress.add(len(lines))
            progress.close()
        # field by field, each field's chunks freed once joined: the store is never held twice
        ids = {f: _concat([c.ids.pop(f) for c in chunks]) for f in FIELDS}
        tops = {f: _concat([c.tops.pop(f) for c in chunks]) for f in MULTI_VALUED}
        present = [f for f, a in ids.items() if a.null_count < len(a)]  # joining the rest costs nothing
        self.columns = _Columns({f: ids[f] for f in present}, {f: tops[f] for f in tops if f in present})
        self._seen: dict[str, np.ndarray] = {}
        self.encoded = False

    def first_uses(self, field: str, rows: np.ndarray) -> np.ndarray:
        """The distinct ``rows`` (in order of first occurrence) not yet passed for ``field``."""
        seen = self._seen.setdefault(field, np.zeros(len(self.rows), dtype=bool))
        distinct, first = np.unique(rows, return_index=True)
        new = distinct[np.argsort(first)]
        new = new[~seen[new]]
        seen[new] = True
        return new

    def encode(self, encoders: dict) -> None:
        """Replace the raw ids by model ids, once: a record shared by many rows is encoded once."""
        if not self.encoded:
            self.columns.ids = {f: _encode(a, encoders[f]) for f, a in self.columns.ids.items()}
            self.encoded = True

    def _parse_block(self, path: str, first_no: int, lines: list[str], max_ids: int) -> _Columns:
        builder = _ColumnsBuilder(len(lines), max_ids)
        rows = self.rows
        start = kept = len(rows)
        for line_no, line in enumerate(lines, first_no):
            if not line or line == "\r":
                continue
            parts = line.rstrip("\r").split(",", 2)
            if len(parts) != 3:
                raise DataError(
                    f"{path} line {line_no}: expected 3 comma-separated columns "
                    f"(common_feature_index, feature_num, feature_list), got {len(parts)}"
                )
            key = parts[0]
            if key in rows:
                raise DataError(f"{path} line {line_no}: common_feature_index {key!r} appears twice")
            builder.set_row(kept - start, _parse_features(parts[2], path, line_no))
            rows[key] = kept
            kept += 1
        return builder.columns(kept - start)


def _concat(arrays: list[pa.Array]) -> pa.Array:
    return pa.concat_arrays(arrays) if arrays else pa.array([], pa.int64())


@dataclasses.dataclass
class _Block:
    """Consecutive impressions of a skeleton file: labels, the lines' own features and the row
    of each impression's common record in ``store``."""

    sample_ids: list[str]
    click: np.ndarray
    purchase: np.ndarray
    own: _Columns
    common_rows: np.ndarray
    store: _CommonStore

    @property
    def rows(self) -> int:
        return len(self.sample_ids)


class _RawReader:
    """Streams a split's skeleton files as joined blocks; keeps the last common store loaded."""

    def __init__(self, max_ids: int, skip_missing_common: bool, every_s: float) -> None:
        self.max_ids, self.skip_missing, self.every_s = max_ids, skip_missing_common, every_s
        self._store_paths: list[str] | None = None
        self._store: _CommonStore | None = None

    def blocks(self, split: _Split, what: str = "") -> Iterator[_Block]:
        store = self._common(split.commons)
        for path in split.skeletons:
            progress = Progress(f"{path}{what}", self.every_s)
            for first_no, lines in _line_blocks(path):
                block = self._skeleton_block(path, first_no, lines, store)
                progress.add(block.rows)
                yield block
            progress.close()

    def _common(self, paths: list[str]) -> _CommonStore:
        if self._store_paths != paths:
            self._store = None  # free the previous store before parsing the next
            self._store = _CommonStore(paths, self.max_ids, self.every_s)
            self._store_paths = paths
        return self._store

    def _skeleton_block(self, path: str, first_no: int, lines: list[str], store: _CommonStore) -> _Block:
        builder = _ColumnsBuilder(len(lines), self.max_ids)
        common_rows = store.rows
        sample_ids: list[str] = []
        clicks: list[float] = []
        purchases: list[float] = []
        joined: list[int] = []
        for line_no, line in enumerate(lines, first_no):
            if not line or line == "\r":
                continue
            parts = line.rstrip("\r").split(",", 5)
            if len(parts) != 6:
                raise DataError(
                    f"{path} line {line_no}: expected 6 comma-separated columns (sample_id, click, "
                    f"purchase, common_feature_index, feature_num, feature_list), got {len(parts)}"
                )
            common_row = common_rows.get(parts[3])
            if common_row is None:
                if self.skip_missing:
                    continue
                raise DataError(
                    f"{path} line {line_no}: common_feature_index {parts[3]!r} is not in "
                    f"{store.source} (pass missing_common='skip' to drop such lines)"
                )
            click, purchase = _labels(parts[1], parts[2], path, line_no)
            builder.set_row(len(joined), _parse_features(parts[5], path, line_no))
            joined.append(common_row)
            sample_ids.append(parts[0])
            clicks.append(click)
            purchases.append(purchase)
        return _Block(sample_ids, np.asarray(clicks, np.float32), np.asarray(purchases, np.float32),
                      builder.columns(len(joined)), np.asarray(joined, dtype=np.int64), store)


def _labels(click: str, purchase: str, path: str, line_no: int) -> tuple[float, float]:
    c, p = _LABEL_VALUES.get(click), _LABEL_VALUES.get(purchase)
    if c is None or p is None:
        raise DataError(f"{path} line {line_no}: click and purchase must be 0 or 1, got "
                        f"{click!r} and {purchase!r}")
    if p > c:
        raise DataError(f"{path} line {line_no}: purchase=1 without a click (click=0); "
                        f"a conversion must follow a click")
    return c, p


# --- ids and output ----------------------------------------------------------------------------


def _joined(own: pa.Array, shared: pa.Array | None, rows: np.ndarray) -> pa.Array:
    """A block's column: its lines' own values, else their common records' (``shared[rows]``)."""
    if shared is None:
        return own
    if own.null_count == len(own):
        return shared.take(rows)
    return pc.coalesce(own, shared.take(rows))


def _flat_ids(values: pa.Array) -> pa.Array:
    return values.flatten() if pa.types.is_list(values.type) else values


def _build_vocabs(splits: list[_Split], reader: _RawReader, max_vocab: int) -> dict:
    """First pass: one vocabulary per field over every split; too-large fields -> Hasher."""
    encoders: dict[str, Vocab | Hasher] = {f: Vocab() for f in FIELDS}
    for split in splits:
        for block in reader.blocks(split, " (vocabulary pass)"):
            for f in FIELDS:
                learn_ids(encoders, f, _flat_ids(_new_values(block, f)), max_vocab)
    return encoders


def _new_values(block: _Block, field: str) -> pa.Array:
    """The block's values of ``field`` in row order, except that a common record whose values
    were all handed out before is left out (they are known already, and records repeat a lot)."""
    own, shared = block.own.ids[field], block.store.columns.ids.get(field)
    if shared is None or own.null_count < len(own):
        return _joined(own, shared, block.common_rows)
    return shared.take(block.store.first_uses(field, block.common_rows))


def _encode(values: pa.Array, encoder: Vocab | Hasher) -> pa.Array:
    """Raw ids -> model ids, keeping the nulls."""
    absent = values.is_null()
    if not pa.types.is_list(values.type):
        return pa.array(encoder.encode(values), pa.int64(), mask=absent.to_numpy(zero_copy_only=False))
    ids = pa.array(encoder.encode(values.flatten()), pa.int64())
    return pa.ListArray.from_arrays(_offsets(values), ids, mask=absent)


def _offsets(lists: pa.Array) -> pa.Array:
    """Offsets of ``lists.flatten()`` with null lists as empty ones."""
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
    return pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int32())


def _filled(ids: pa.Array) -> pa.Array:
    """Absent ids -> 0, absent lists -> empty lists."""
    if pa.types.is_list(ids.type):
        return pa.ListArray.from_arrays(_offsets(ids), ids.flatten())
    return ids.fill_null(0)


def _arrow_schema() -> pa.Schema:
    return pa.schema(
        [(f"f_{f}", _ID_LIST if f in _MULTI else pa.int64()) for f in FIELDS]
        + [(f"d_{f}", pa.float32()) for f in DENSE_ORDER]
        + [(label, pa.float32()) for label in LABELS]
    )


def _feature_schema(encoders: dict) -> FeatureSchema:
    return FeatureSchema(
        sparse=tuple(sparse_field_for(f"f_{f}", encoders[f], multi_hot=f in _MULTI) for f in FIELDS),
        dense=tuple(f"d_{f}" for f in DENSE_ORDER),
        labels=LABELS,
        binary_labels=LABELS,
        group_key=f"f_{USER_FIELD}",
    )


def _table(block: _Block, encoders: dict, arrow_schema: pa.Schema) -> pa.Table:
    """The block's output rows; its store must be encoded with ``encoders``."""
    own, shared, rows = block.own, block.store.columns, block.common_rows
    cols = {}
    for f in FIELDS:
        mine = own.ids[f] if own.ids[f].null_count == len(own.ids[f]) else _encode(own.ids[f], encoders[f])
        cols[f"f_{f}"] = _filled(_joined(mine, shared.ids.get(f), rows))
    for f in DENSE_ORDER:
        cols[f"d_{f}"] = _joined(own.tops[f], shared.tops.get(f), rows).fill_null(0.0)
    cols |= {"click": block.click, "purchase": block.purchase}
    return pa.table(cols, schema=arrow_schema)


def _valid_rows(sample_ids: list[str], share: float, seed: int) -> np.ndarray:
    """Rows whose seeded sample_id hash falls in the first ``share`` of the hash range."""
    if share == 0.0 or not sample_ids:
        return np.zeros(len(sample_ids), dtype=bool)
    key = hashlib.md5(f"aliccp-raw-valid-{seed}".encode()).hexdigest()[:16]
    hashes = pd.util.hash_array(np.asarray(sample_ids, dtype=object), hash_key=key, categorize=False)
    return (hashes >> np.uint64(11)).astype(np.float64) * 2.0**-53 < share


def _write_split(split: _Split, reader: _RawReader, encoders: dict, output: ImportOutput,
                 arrow_schema: pa.Schema, valid_share: float, seed: int) -> None:
    writer = output.parts(split.name, arrow_schema)
    valid = output.parts("valid", arrow_schema) if split.name == "train" else None
    for block in reader.blocks(split):
        block.store.encode(encoders)
        table = _table(block, encoders, arrow_schema)
        if valid is None:
            writer.write(table)
            continue
        to_valid = _valid_rows(block.sample_ids, valid_share, seed)
        writer.write(table.filter(pa.array(~to_valid)))
        valid.write(table.filter(pa.array(to_valid)))
