"""Arrow -> RecBatch conversion and the errors bad input files raise."""

from __future__ import annotations

import os
import socket
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from distrec.data.convert import arrow_to_batch, check_file_schema
from distrec.data.reader import ParquetStreamReader, plan_units
from distrec.data.schema import FeatureSchema
from distrec.errors import DataError
from distrec.storage import list_parquet_files

SCHEMA = FeatureSchema.from_dict(
    {
        "sparse": [
            {"name": "a", "num_embeddings": 10},
            {"name": "h", "num_embeddings": 10, "hash": True},
            {"name": "m", "num_embeddings": 10, "multi_hot": True},
        ],
        "sequence": [{"name": "s", "table": "a", "max_len": 2}],
        "dense": ["x"],
        "labels": ["y"],
        "group_key": "g",
    },
    source="test_schema.yaml",
)


def _table(**overrides) -> pa.Table:
    cols = {
        "a": pa.array([3, 1, 7, 0], pa.int64()),
        "h": pa.array([-1, 12, 5, 10], pa.int64()),
        "m": pa.array([[1, 2], [], [], [9]], pa.list_(pa.int64())),
        "s": pa.array([[1, 2, 3], [4], [5, 6, 7, 8], []], pa.list_(pa.int64())),
        "x": pa.array([0.5, 0.0, 2.0, 1.0], pa.float32()),
        "y": pa.array([1, 0, 1, 0], pa.int8()),
        "g": pa.array([10, 11, 12, 13], pa.int64()),
    }
    cols.update(overrides)
    return pa.table(cols)


def test_kjt_values_and_lengths():
    b = arrow_to_batch(_table(), SCHEMA, "t.parquet")
    assert b.sparse.keys() == ["a", "h", "m", "s"]
    jt = b.sparse.to_dict()
    assert jt["a"].values().tolist() == [3, 1, 7, 0] and jt["a"].lengths().tolist() == [1, 1, 1, 1]
    assert jt["h"].values().tolist() == [9, 2, 5, 0]  # hashed: id % num_embeddings, never negative
    assert jt["m"].values().tolist() == [1, 2, 9] and jt["m"].lengths().tolist() == [2, 0, 0, 1]
    # sequences keep their last max_len items
    assert jt["s"].values().tolist() == [2, 3, 4, 7, 8] and jt["s"].lengths().tolist() == [2, 1, 2, 0]
    assert b.dense.tolist() == [[0.5], [0.0], [2.0], [1.0]]
    assert b.labels.tolist() == [[1.0], [0.0], [1.0], [0.0]]
    assert b.weights.tolist() == [1.0] * 4 and b.group_ids.tolist() == [10, 11, 12, 13]
    assert b.sparse.values().dtype == torch.int64 and b.dense.dtype == b.labels.dtype == torch.float32


def test_kjt_of_sliced_and_chunked_input():
    t = _table()
    sliced = arrow_to_batch(t.slice(2), SCHEMA, "t.parquet").sparse.to_dict()
    assert sliced["s"].values().tolist() == [7, 8] and sliced["s"].lengths().tolist() == [2, 0]
    assert sliced["m"].values().tolist() == [9] and sliced["m"].lengths().tolist() == [0, 1]
    chunked = pa.concat_tables([t.slice(0, 1), t.slice(1)])
    a = arrow_to_batch(chunked, SCHEMA, "t.parquet").sparse
    b = arrow_to_batch(t, SCHEMA, "t.parquet").sparse
    assert a.values().tolist() == b.values().tolist() and a.lengths().tolist() == b.lengths().tolist()


def test_id_out_of_range_names_column_value_and_size():
    with pytest.raises(DataError, match=r"f\.parquet, row 1: column 'a' \(sparse field\) has 10, .*num_embeddings=10"):
        arrow_to_batch(_table(a=pa.array([1, 10, 2, 3], pa.int64())), SCHEMA, "f.parquet")
    with pytest.raises(DataError, match=r"row 1: column 's' \(sequence field\) has -4"):
        arrow_to_batch(_table(s=pa.array([[1], [-4], [], []], pa.list_(pa.int64()))), SCHEMA, "f.parquet")


def test_null_label_is_an_error():
    with pytest.raises(DataError, match=r"f\.parquet, row 1: column 'y' \(label\) has null"):
        arrow_to_batch(_table(y=pa.array([1, None, 0, 0], pa.int8())), SCHEMA, "f.parquet")


def test_check_file_schema_names_file_column_and_types():
    ok = _table().schema
    check_file_schema(ok, SCHEMA, "f.parquet")
    bad = _table(a=pa.array(["x", "y", "z", "w"])).schema
    with pytest.raises(DataError, match=r"f\.parquet: column 'a'.*type string, expected an integer type"):
        check_file_schema(bad, SCHEMA, "f.parquet")
    with pytest.raises(DataError, match=r"column 'm'.*expected list<int64>"):
        check_file_schema(_table(m=pa.array([1, 2, 3, 4])).schema, SCHEMA, "f.parquet")
    with pytest.raises(DataError, match=r"f\.parquet: column 'x'.*test_schema\.yaml.*missing"):
        check_file_schema(_table().drop_columns(["x"]).schema, SCHEMA, "f.parquet")


# --- files -------------------------------------------------------------------------------------


def _write(path, table, row_group_size=2):
    pq.write_table(table, path, row_group_size=row_group_size)
    return str(path)


def test_missing_path_names_it(tmp_path):
    missing = str(tmp_path / "nope" / "train.parquet")
    with pytest.raises(DataError, match="nope/train.parquet"):
        list_parquet_files(missing)
    with pytest.raises(DataError, match="nope/train.parquet"):
        plan_units([missing])
    with pytest.raises(DataError, match="no Parquet files"):
        list_parquet_files(str(tmp_path))


def test_wrong_type_and_missing_column_caught_when_planning(tmp_path):
    good = _write(tmp_path / "good.parquet", _table())
    bad = _write(tmp_path / "bad.parquet", _table(h=pa.array(["1", "2", "3", "4"])))
    with pytest.raises(DataError, match=r"bad\.parquet: column 'h'.*string.*integer"):
        plan_units([good, bad], schema=SCHEMA)
    short = _write(tmp_path / "short.parquet", _table().drop_columns(["g"]))
    with pytest.raises(DataError, match=r"short\.parquet: column 'g'.*missing"):
        ParquetStreamReader(SCHEMA, [good, short], batch_size=2)
    # units planned without a schema are still checked when the reader opens each file
    reader = ParquetStreamReader(SCHEMA, plan_units([good, short]), batch_size=2)
    with pytest.raises(DataError, match=r"short\.parquet: column 'g'.*missing"):
        list(reader)


def test_bad_id_raised_while_reading(tmp_path):
    f = _write(tmp_path / "ids.parquet", _table(a=pa.array([1, 2, 3, 99], pa.int64())))
    reader = ParquetStreamReader(SCHEMA, [f], batch_size=2)
    with pytest.raises(DataError, match=r"ids\.parquet, row group 1, row 1: column 'a'.* has 99,.*num_embeddings=10"):
        list(reader)


def test_corrupt_footer_names_the_file(tmp_path):
    f = _write(tmp_path / "cut.parquet", _table())
    size = os.path.getsize(f)
    with open(f, "r+b") as fh:
        fh.truncate(size - 10)
    not_parquet = tmp_path / "notes.parquet"
    not_parquet.write_text("hello")
    for path in (f, str(not_parquet)):
        with pytest.raises(DataError, match=os.path.basename(path)):
            plan_units([path])


def test_unreachable_s3_endpoint_fails_fast(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    with pytest.raises(DataError, match=rf"s3://bkt/train.*{endpoint}"):
        list_parquet_files("s3://bkt/train", endpoint)
    with pytest.raises(DataError, match=rf"s3://bkt/train/a\.parquet.*{endpoint}"):
        plan_units(["s3://bkt/train/a.parquet"], endpoint)
    assert time.monotonic() - start < 30


def test_reader_batches_straddling_row_groups_match_one_conversion(tmp_path):
    """Nulls, lists and sequences cut into batches across row groups join back to the whole."""
    table = pa.concat_tables([_table()] * 5).combine_chunks()
    f = _write(tmp_path / "many.parquet", table, row_group_size=7)
    whole = arrow_to_batch(table, SCHEMA, f).sparse.to_dict()
    batches = list(ParquetStreamReader(SCHEMA, [f], batch_size=3))
    assert [b.batch_size for b in batches] == [3] * 6 + [2]
    for key, jt in whole.items():
        parts = [b.sparse.to_dict()[key] for b in batches]
        assert torch.cat([p.values() for p in parts]).tolist() == jt.values().tolist(), key
        assert torch.cat([p.lengths() for p in parts]).tolist() == jt.lengths().tolist(), key
    assert torch.cat([b.dense for b in batches]).flatten().tolist() == [0.5, 0.0, 2.0, 1.0] * 5
