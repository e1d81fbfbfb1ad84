"""`distrec data inspect`: counts from the Parquet metadata, per-column statistics in one streamed
pass (distinct counts exact up to 4096, estimated above), problems against a schema."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distrec.cli import main
from distrec.data.inspect import DISTINCT_EXACT, format_report, inspect_parquet
from distrec.data.schema import FeatureSchema, SequenceField, SparseField


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "train"
    data.mkdir()
    lengths = rng.integers(0, 20, 3000)
    for i in range(3):
        n = 1000
        offsets = np.r_[0, np.cumsum(lengths[i * n:(i + 1) * n])].astype(np.int32)
        table = pa.table({
            "item": pa.array(rng.integers(0, 50, n)),
            "big": pa.array(np.arange(i * n * 10, (i + 1) * n * 10, 10)),  # 3000 distinct in all
            "hist": pa.ListArray.from_arrays(pa.array(offsets), pa.array(rng.integers(1, 50, offsets[-1]))),
            "price": pa.array(np.where(rng.random(n) < 0.25, np.nan, 1.0)).cast(pa.float32()),
            "city": pa.array([None if j % 4 == 0 else f"c{j % 9}" for j in range(n)]),
            "click": pa.array((np.arange(n) % 5 == 0).astype(np.float32)),
        })
        pq.write_table(table, data / f"part-{i}.parquet", row_group_size=250)
    schema = FeatureSchema(sparse=(SparseField("item", 40),), sequence=(SequenceField("hist", table="item", max_len=20),),
                           dense=("price",), labels=("click",))
    return data, lengths, schema


def test_counts_nulls_distinct_rates_and_lengths(dataset):
    data, lengths, schema = dataset
    report = inspect_parquet(str(data), schema)
    assert (report["files"], report["row_groups"], report["rows"]) == (3, 12, 3000)
    col = {c["name"]: c for c in report["columns"]}
    assert col["item"]["distinct"] == 50 and not col["item"]["distinct_estimated"]
    assert col["big"]["distinct"] == 3000 and col["city"]["null_share"] == 0.25 and col["city"]["distinct"] == 9
    assert report["label_rates"] == {"click": pytest.approx(0.2)}
    q = col["hist"]["length_quantiles"]
    assert q["p50"] == np.quantile(lengths, 0.5) and q["max"] == lengths.max()
    assert col["hist"]["role"] == "sequence (max_len 20)" and col["hist"]["num_embeddings"] == 40
    assert report["problems"] == ["item: largest id 49 >= num_embeddings 40", "hist: largest id 49 >= num_embeddings 40"]
    text = format_report(report)
    assert "3,000 rows in 3 file(s), 12 row group(s)" in text and "label rates: click 0.2000" in text


def test_many_distinct_values_are_estimated(tmp_path):
    n = 50 * DISTINCT_EXACT
    pq.write_table(pa.table({"id": pa.array(np.arange(n) * 7919)}), tmp_path / "a.parquet")
    (col,) = inspect_parquet(str(tmp_path / "a.parquet"))["columns"]
    assert col["distinct_estimated"] and col["distinct"] == pytest.approx(n, rel=0.05)


def test_the_command_prints_a_table_or_json(dataset, tmp_path, capsys):
    data, _, schema = dataset
    assert main(["data", "inspect", str(data)]) == 0
    assert "column" in capsys.readouterr().out
    schema.save(str(tmp_path / "schema.yaml"))
    assert main(["data", "inspect", str(data), "--schema", str(tmp_path / "schema.yaml"), "--json"]) == 1  # problems
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 3000 and report["problems"]
    assert main(["data", "inspect", str(tmp_path / "nothing")]) == 2
    assert "no Parquet files found" in capsys.readouterr().err
