"""Ali-CCP (Taobao click + purchase) CSVs -> distrec Parquet.

Input: comma-separated files with a header ``click, purchase, <sparse fields 101 ... 150_14>,
<dense fields D109_14 ... D853>`` (the layout of the preprocessed Ali-CCP train/val/test files).
Columns named ``D<digits>...`` are dense, every other non-label column is a sparse field.

Output: ``train/ valid/ test/part-*.parquet`` (rows in file order) with ``f_<field>`` int64 ids,
``d_<field>`` float32 dense values (empty -> 0), ``click`` and ``purchase`` float32 labels, and
``schema.yaml`` (group_key ``f_101``, the user id field).

Ids: a first streaming pass over every split builds one vocabulary per field (1..n in order of
first appearance, 0 = empty); a field whose distinct count passes ``max_vocab - 1`` switches to
``hash: true`` with ``max_vocab`` buckets and stops growing its vocabulary, so memory is bounded
by 23 x ``max_vocab`` tokens. ``hash_all=True`` hashes every field and needs one pass only.
Both passes stream the files block by block.
"""

from __future__ import annotations

import re

import pyarrow as pa

from distrec.data.importers.common import (
    DEFAULT_ROW_GROUP_SIZE,
    DEFAULT_ROWS_PER_FILE,
    Hasher,
    ImportOutput,
    Progress,
    Vocab,
    WriteOptions,
    csv_batches,
    first_line,
    glob_files,
    numbers,
    require_columns,
    sparse_field_for,
)
from distrec.data.schema import FeatureSchema
from distrec.errors import DataError
from distrec.storage import filesystem

LABELS = ("click", "purchase")
USER_FIELD = "101"
_DENSE = re.compile(r"^D\d")


def import_aliccp(
    src: str,
    out: str,
    *,
    train: str = "*train*",
    valid: str = "*val*",
    test: str = "*test*",
    max_vocab: int = 2_000_000,
    hash_all: bool = False,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    overwrite: bool = False,
    progress_every_s: float = 10.0,
) -> FeatureSchema:
    """Import Ali-CCP CSVs from ``src`` (a directory, or a single CSV imported as train only).

    train/valid/test: file names or globs, relative to ``src`` unless absolute/URLs; a split whose
    default glob matches nothing is skipped, but train must match at least one file.
    """
    opts = WriteOptions(row_group_size, rows_per_file, overwrite, progress_every_s)
    output = ImportOutput(out, opts)
    splits = _split_files(src, {"train": train, "valid": valid, "test": test})
    headers = _headers(splits)
    header = next(iter(headers.values()))
    sparse = [c for c in header if c not in LABELS and not _DENSE.match(c)]
    dense = [c for c in header if _DENSE.match(c)]
    if not sparse:
        raise DataError(f"{splits['train'][0]}: no sparse columns in header {header}")

    if hash_all:
        encoders = {c: Hasher(max_vocab) for c in sparse}
    else:
        encoders = _build_vocabs(headers, sparse, max_vocab, progress_every_s)

    names = {c: f"f_{c}" for c in sparse} | {c: f"d_{c[1:].lower()}" for c in dense}
    arrow_schema = pa.schema(
        [(names[c], pa.int64()) for c in sparse]
        + [(names[c], pa.float32()) for c in dense]
        + [(label, pa.float32()) for label in LABELS]
    )
    schema = FeatureSchema(
        sparse=tuple(sparse_field_for(names[c], encoders[c]) for c in sparse),
        dense=tuple(names[c] for c in dense),
        labels=LABELS,
        binary_labels=LABELS,
        group_key=names[USER_FIELD] if USER_FIELD in sparse else None,
    )
    types = {c: pa.string() for c in sparse} | {c: pa.float32() for c in dense + list(LABELS)}
    with output:
        for split, files in splits.items():
            writer = output.parts(split, arrow_schema)
            for path in files:
                progress = Progress(path, progress_every_s)
                line = 2
                for batch in csv_batches(path, headers[path], types, header_lines=1):
                    cols = {names[c]: encoders[c].encode(batch.column(c)) for c in sparse}
                    cols |= {names[c]: numbers(batch, c, path, line, fill=0.0) for c in dense}
                    cols |= {c: numbers(batch, c, path, line) for c in LABELS}
                    writer.write(pa.table(cols, schema=arrow_schema))
                    line += batch.num_rows
                    progress.add(batch.num_rows)
                progress.close()
            writer.close()
        return output.finish(schema)


def _split_files(src: str, patterns: dict[str, str]) -> dict[str, list[str]]:
    fs, path = filesystem(src)
    if fs.isfile(path):
        return {"train": [src]}
    if not fs.isdir(path):
        raise DataError(f"Ali-CCP input not found: {src} (expected a directory or a CSV file)")
    defaults = {"train": "*train*", "valid": "*val*", "test": "*test*"}
    found = {}
    for split, pattern in patterns.items():
        absolute = "://" in pattern or pattern.startswith("/")
        files = glob_files(pattern if absolute else f"{src.rstrip('/')}/{pattern}")
        twice = [f for f in files if any(f in other for other in found.values())]
        if twice:
            raise DataError(f"Ali-CCP file {twice[0]} matches more than one split's pattern {patterns}")
        if files:
            found[split] = files
        elif split == "train" or pattern != defaults[split]:
            raise DataError(f"Ali-CCP {split} files not found: no file matches {pattern!r} in {src}")
    return found


def _headers(splits: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each file's header, in split order; all must hold the labels and the same column set."""
    headers: dict[str, list[str]] = {}
    for files in splits.values():
        for path in files:
            header = [c.strip().strip('"') for c in first_line(path).split(",")]
            require_columns(path, header, LABELS)
            if headers:
                ref_path, reference = next(iter(headers.items()))
                if set(header) != set(reference):
                    raise DataError(
                        f"{path}: columns differ from {ref_path}: missing "
                        f"{sorted(set(reference) - set(header))}, "
                        f"extra {sorted(set(header) - set(reference))}"
                    )
            headers[path] = header
    return headers


def _build_vocabs(headers: dict[str, list[str]], sparse, max_vocab: int, every_s: float) -> dict:
    """First pass: one vocabulary per sparse field over all files; too-large fields -> Hasher."""
    encoders: dict[str, Vocab | Hasher] = {c: Vocab() for c in sparse}
    types = {c: pa.string() for c in sparse}
    for path, header in headers.items():
        progress = Progress(f"{path} (vocabulary pass)", every_s)
        for batch in csv_batches(path, header, types, header_lines=1):
            for c in sparse:
                learn_ids(encoders, c, batch.column(c), max_vocab)
            progress.add(batch.num_rows)
        progress.close()
    return encoders


def learn_ids(encoders: dict, field, values, max_vocab: int) -> None:
    """Add ``values`` to ``encoders[field]``; a vocabulary reaching ``max_vocab`` ids is replaced
    by a Hasher of ``max_vocab`` buckets (also used by the raw Ali-CCP importer)."""
    encoders[field].add(values)
    if not encoders[field].hash and len(encoders[field]) >= max_vocab:
        encoders[field] = Hasher(max_vocab)  # the vocabulary is dropped: memory stays bounded
