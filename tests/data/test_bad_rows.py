"""Values checked as data is read: bad rows are a DataError naming file, row group, row, column and
value (data.on_bad_rows=error), or are dropped and counted per file (skip); an unreadable row
group names its file."""

from __future__ import annotations

import dataclasses
import logging
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distrec.config.schema import SynthConfig
from distrec.data.reader import ParquetStreamReader, make_loader, plan_units
from distrec.data.schema import FeatureSchema
from distrec.data.synth import write_synthetic
from distrec.data.validate import find_bad_rows
from distrec.errors import DataError
from distrec.storage import list_parquet_files
from distrec.train.data_feed import DataFeed

# 4 files of 1000 rows, row groups of 300 (the last of each 100); c0 is multi-hot
SMALL = SynthConfig(rows=4000, rows_per_file=1000, rows_per_row_group=300, num_sparse=3, num_dense=2,
                    num_embeddings=100, num_users=50, seed=5)
BATCH = 128


@pytest.fixture
def data(tmp_path):
    schema = write_synthetic(str(tmp_path), SMALL, progress=False)
    return dataclasses.replace(schema, group_key="row_id"), list_parquet_files(str(tmp_path))


def _rewrite(file: str, column: str, rows: dict[int, object]) -> None:
    """Set ``column`` at ``rows`` (file row -> value) in place, keeping the row groups."""
    table = pq.read_table(file)
    values = table.column(column).to_pylist()
    for row, value in rows.items():
        values[row] = value
    kind = table.schema.field(column).type
    if pa.types.is_integer(kind) and any(isinstance(v, float) for v in rows.values()):
        kind = pa.float32()  # synth's int8 click column cannot hold NaN
    table = table.set_column(table.schema.get_field_index(column), column, pa.array(values, kind))
    pq.write_table(table, file, row_group_size=SMALL.rows_per_row_group)


def _read_all(schema, files, **kw):
    return list(make_loader(ParquetStreamReader(schema, plan_units(files), BATCH, **kw)))


def test_synth_schema_declares_click_binary(data):
    schema, _ = data
    assert schema.binary_labels == ("click",)
    assert FeatureSchema.from_dict(schema.to_dict()).binary_labels == ("click",)
    with pytest.raises(DataError, match=r"binary_labels \['buy'\] are not in labels \['click'\]"):
        FeatureSchema.from_dict({**schema.to_dict(), "binary_labels": ["buy"]})


@pytest.mark.parametrize("column, row, value, message", [
    ("click", 305, 7.0, r"column 'click' \(binary label\) has 7\.0, expected a value in \[0, 1\]"),
    ("click", 305, float("nan"), r"column 'click' \(binary label\) has nan"),
    ("d1", 305, float("nan"), r"column 'd1' \(dense field\) has nan, expected a finite, non-null value"),
    ("d0", 305, None, r"column 'd0' \(dense field\) has null"),
    ("c1", 305, None, r"column 'c1' \(sparse field\) has null, expected a non-null id in \[0, 100\)"),
    ("c1", 305, 100, r"column 'c1' \(sparse field\) has 100, .*num_embeddings=100: raise it, or set hash: true"),
    ("c0", 305, [3, None], r"column 'c0' \(multi_hot sparse field\) has null, expected a list of which every item"),
    ("c0", 305, [3, -2], r"column 'c0' \(multi_hot sparse field\) has -2"),
    ("c0", 305, None, r"column 'c0' \(multi_hot sparse field\) has null"),
])
def test_bad_value_names_file_row_group_row_column_and_value(data, column, row, value, message):
    schema, files = data
    _rewrite(files[2], column, {row: value, row + 7: value})
    with pytest.raises(DataError) as err:
        _read_all(schema, files)
    text = str(err.value)
    # file row 305 is row 5 of row group 1 (row groups of 300 rows)
    assert text.startswith(f"{files[2]}, row group 1, row 5: "), text
    assert re.search(message, text), text
    assert "2 of the" in text and "data.on_bad_rows=skip" in text


def test_labels_outside_zero_one_pass_when_not_declared_binary(data):
    """Class ids and regression targets (Conure's profile labels, item targets) are not binary."""
    schema, files = data
    _rewrite(files[0], "click", {0: 7.0})
    rows = sum(b.batch_size for b in _read_all(dataclasses.replace(schema, binary_labels=()), files))
    assert rows == SMALL.rows


def test_skip_drops_bad_rows_and_logs_each_file(data, caplog):
    schema, files = data
    _rewrite(files[1], "click", {0: 2.0, 999: -1.0})
    _rewrite(files[3], "d0", {10: float("inf")})
    _rewrite(files[3], "c2", {20: None})
    bad_ids = {int(pq.read_table(f, columns=["row_id"]).column(0)[r].as_py())
               for f, r in ((files[1], 0), (files[1], 999), (files[3], 10), (files[3], 20))}
    with caplog.at_level(logging.WARNING, logger="distrec"):
        batches = _read_all(schema, files, on_bad_rows="skip")
    ids = np.concatenate([b.group_ids.numpy() for b in batches])
    all_ids = {i for f in files for i in pq.read_table(f, columns=["row_id"]).column(0).to_pylist()}
    assert len(ids) == len(set(ids.tolist())) == SMALL.rows - 4
    assert set(ids.tolist()) == all_ids - bad_ids
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert sorted(lines) == sorted([
        (f"skipped 2 bad row(s) of {files[1]} (data.on_bad_rows=skip); the first: {files[1]}, row group 0, "
         "row 0: column 'click' (binary label) has 2.0, expected a value in [0, 1]"),
        (f"skipped 2 bad row(s) of {files[3]} (data.on_bad_rows=skip); the first: {files[3]}, row group 0, "
         "row 10: column 'd0' (dense field) has inf, expected a finite, non-null value"),
    ])


def test_skip_through_the_data_feed_pads_to_the_planned_steps(data):
    schema, files = data
    _rewrite(files[0], "click", {r: 3.0 for r in range(200)})
    feed = DataFeed.open(os.path.dirname(files[0]), schema, batch_size=BATCH, rank=0, world_size=1, seed=0,
                         shuffle=False, loader_workers=0, s3_endpoint_url=None, on_bad_rows="skip")
    batches = list(feed.batches(epoch=0))
    assert len(batches) == feed.steps(0)  # fewer rows than planned: weight-0 padding fills the steps
    assert int(sum(b.weights.sum() for b in batches)) == SMALL.rows - 200
    with pytest.raises(DataError, match="column 'click'"):
        list(dataclasses.replace(feed, on_bad_rows="error").batches(epoch=0))


def test_clean_chunk_has_no_bad_rows(data):
    schema, files = data
    assert find_bad_rows(pq.read_table(files[0]), schema) is None


def _corrupt_row_group(file: str, row_group: int, column: str = "click") -> None:
    """Scramble the bytes of ``column``'s chunk in ``row_group``: the footer stays readable."""
    group = pq.read_metadata(file).row_group(row_group)
    chunk = next(group.column(i) for i in range(group.num_columns) if group.column(i).path_in_schema == column)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    with open(file, "r+b") as fh:
        fh.seek(start)
        raw = bytearray(fh.read(chunk.total_compressed_size))
        fh.seek(start)
        fh.write(bytes((b * 31 + 7) % 256 for b in raw))


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_row_group_names_its_file(data, workers):
    schema, files = data
    _corrupt_row_group(files[3], 2)
    units = plan_units(files, schema=schema)  # footers are fine: planning passes
    reader = ParquetStreamReader(schema, units, BATCH, num_loader_workers=workers)
    # (a loader worker's error reaches the caller as the same type, its message after a traceback)
    with pytest.raises(DataError, match=rf"cannot read {files[3]}, row group 2 \(corrupt or truncated\?\)"):
        list(make_loader(reader))
