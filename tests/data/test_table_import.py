"""`distrec data import table`: a FuxiCTR/DeepCTR-like click table (CSV, TSV, Parquet, a glob of
files, S3) and a feature spec -> ids, floats and labels as the spec says, statistics from the
training rows only, vocabularies saved and applied the same way to new rows."""

import math

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from byo_files import (
    TABLE_HEADER,
    click_table_rows,
    write_delimited,
    write_parquet,
    write_spec,
)

from distrec.cli import main
from distrec.data.importers import common
from distrec.data.importers.table import import_table
from distrec.data.importers.table_transform import load_transform
from distrec.data.schema import FeatureSchema
from distrec.errors import ConfigError
from distrec.storage import list_parquet_files

SPLITS = ("train", "valid", "test")
ROWS = 600


def read(out, split) -> pa.Table:
    table = pa.concat_tables(pq.read_table(f) for f in list_parquet_files(str(out / split)))
    return table.sort_by("ts") if "ts" in table.column_names else table


def raw_by_ts(rows) -> dict[float, dict]:
    return {float(r[-1]): dict(zip(TABLE_HEADER, r)) for r in rows}


def vocabulary(out, name) -> dict[str, int]:
    t = pq.read_table(out / "vocabularies" / f"{name}.parquet")
    return dict(zip(t["value"].to_pylist(), t["id"].to_pylist()))


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("table")
    rows = click_table_rows(ROWS)
    src = write_delimited(tmp / "clicks.csv", rows)
    out = tmp / "out"
    schema = import_table(str(src), str(out), spec=str(write_spec(tmp / "spec.yaml")))
    return rows, out, schema, tmp


def test_every_row_lands_in_one_split_with_the_schema_the_ctr_recipe_reads(imported):
    rows, out, schema, _ = imported
    assert FeatureSchema.load(str(out / "schema.yaml")) == schema
    assert [f.name for f in schema.sparse] == ["user_id", "item_id", "cate_id", "city", "age"]
    assert schema.dense == ("price",) and schema.labels == ("click", "conversion")
    assert schema.binary_labels == ("click", "conversion") and schema.group_key == "user_id_group"
    (seq,) = schema.sequence
    assert (seq.name, seq.table, seq.max_len) == ("hist_items", "item_id", 8)
    tables = {split: read(out, split) for split in SPLITS}
    assert sum(t.num_rows for t in tables.values()) == ROWS
    assert sorted(ts for t in tables.values() for ts in t["ts"].to_pylist()) == sorted(raw_by_ts(rows))
    assert 0.7 < tables["train"].num_rows / ROWS < 0.9  # a seeded random split by row
    for t in tables.values():
        assert t.schema.field("hist_items").type == pa.list_(pa.int64())
        assert t.schema.field("price").type == pa.float32() and t.schema.field("click").type == pa.float32()


def test_ids_follow_the_training_vocabulary_with_oov_and_missing(imported):
    rows, out, schema, _ = imported
    raw = raw_by_ts(rows)
    train = read(out, "train")
    train_raw = [raw[ts] for ts in train["ts"].to_pylist()]
    users = vocabulary(out, "user_id")
    counts = {u: sum(r["user_id"] == u for r in train_raw) for u in {r["user_id"] for r in train_raw}}
    assert set(users) == {u for u, n in counts.items() if n >= 2}  # min_count 2, training rows only
    assert sorted(users.values()) == list(range(2, len(users) + 2))
    assert list(users) == sorted(users, key=lambda u: (-counts[u], u))  # by falling count
    items, cities = vocabulary(out, "item_id"), vocabulary(out, "city")
    hist_tokens = {t for r in train_raw for t in r["hist_items"].split("^") if t}
    assert set(items) == {r["item_id"] for r in train_raw} | hist_tokens  # the shared table counts both
    assert schema.field("item_id").num_embeddings == len(items) + 2
    for split in SPLITS:
        t = read(out, split)
        for row in t.to_pylist():
            r = raw[row["ts"]]
            assert row["user_id"] == users.get(r["user_id"], 1)
            assert row["item_id"] == items.get(r["item_id"], 1)
            assert row["city"] == (cities.get(r["city"], 1) if r["city"] else 0)
            assert 1 <= row["cate_id"] < 16
            hist = [t for t in r["hist_items"].split("^") if t][-8:]  # the last max_len tokens
            assert row["hist_items"] == [items.get(t, 1) for t in hist]
            assert row["age"] == 1 + sum(int(r["age"]) >= b for b in (25, 40, 55))
            assert row["click"] == float(r["click"]) and row["conversion"] == float(r["conversion"])


def test_numbers_are_normalised_by_the_training_rows(imported):
    rows, out, _, _ = imported
    raw = raw_by_ts(rows)
    train_prices = [float(raw[ts]["price"]) for ts in read(out, "train")["ts"].to_pylist() if raw[ts]["price"]]
    mean, std = np.mean(train_prices), np.std(train_prices)
    for split in SPLITS:
        for row in read(out, split).to_pylist():
            price = raw[row["ts"]]["price"]
            expected = (float(price) - mean) / std if price else 0.0  # fill: mean -> 0 after standardising
            assert row["price"] == pytest.approx(expected, abs=1e-5)


def test_the_saved_transform_maps_new_raw_rows_the_same_way(imported):
    rows, out, _, tmp = imported
    raw = pacsv.read_csv(tmp / "clicks.csv", convert_options=pacsv.ConvertOptions(
        column_types={n: pa.string() for n in TABLE_HEADER}))
    again = load_transform(str(out)).encode(raw).sort_by("ts")
    written = pa.concat_tables(read(out, s) for s in SPLITS).sort_by("ts")
    assert again.equals(written)


@pytest.mark.parametrize("layout", ["tsv", "parquet", "glob", "tiny_blocks"])
def test_tsv_parquet_a_glob_and_tiny_blocks_give_the_same_tables(imported, tmp_path, layout, monkeypatch):
    rows, out, _, _ = imported
    if layout == "tsv":
        src = write_delimited(tmp_path / "clicks.tsv", rows, delimiter="\t")
    elif layout == "parquet":
        src = write_parquet(tmp_path / "clicks.parquet", rows)
    elif layout == "glob":
        for i in range(3):
            write_delimited(tmp_path / f"part-{i}.csv", rows[i * 200:(i + 1) * 200])
        src = tmp_path / "part-*.csv"
    else:
        monkeypatch.setattr(common, "CSV_BLOCK_BYTES", 4096)
        src = write_delimited(tmp_path / "clicks.csv", rows)
    split = "{by: hash, key: item_id, fractions: [0.8, 0.1, 0.1]}"
    spec = str(write_spec(tmp_path / "spec.yaml", split=split))
    import_table(str(src), str(tmp_path / "got"), spec=spec)
    reference = tmp_path / "reference"
    import_table(str(write_delimited(tmp_path / "all.csv", rows)), str(reference), spec=spec)
    for split_name in SPLITS:
        assert read(tmp_path / "got", split_name).equals(read(reference, split_name)), split_name
    items = {r["item_id"] for r in read(reference, "valid").to_pylist()}
    assert items.isdisjoint(r["item_id"] for r in read(reference, "train").to_pylist())  # hash: items together


def test_split_by_time_fractions_and_cutoffs_and_by_files(imported, tmp_path):
    rows, _, _, _ = imported
    src = write_delimited(tmp_path / "clicks.csv", rows)
    import_table(str(src), str(tmp_path / "time"),
                 spec=str(write_spec(tmp_path / "t.yaml", split="{by: time, column: ts, fractions: [0.8, 0.1, 0.1]}")))
    ts = {s: read(tmp_path / "time", s)["ts"].to_numpy() for s in SPLITS}
    assert ts["train"].max() < ts["valid"].min() <= ts["valid"].max() < ts["test"].min()
    assert abs(len(ts["train"]) - 0.8 * ROWS) <= 2
    import_table(str(src), str(tmp_path / "no-test"), spec=str(write_spec(
        tmp_path / "n.yaml", split="{by: time, column: ts, fractions: [0.7, 0.3, 0.0]}")))
    assert read(tmp_path / "no-test", "train").num_rows + read(tmp_path / "no-test", "valid").num_rows == ROWS
    assert not (tmp_path / "no-test" / "test").exists()  # the latest row too is kept, in valid
    cut = "{by: time, column: ts, valid_from: '2020-09-13T12:56:40', test_from: 1600010000}"
    import_table(str(src), str(tmp_path / "cut"), spec=str(write_spec(tmp_path / "c.yaml", split=cut)))
    ts = {s: read(tmp_path / "cut", s)["ts"].to_numpy() for s in SPLITS}
    assert ts["train"].max() < 1_600_001_800 <= ts["valid"].min() and ts["test"].min() >= 1_600_010_000
    write_delimited(tmp_path / "a.csv", rows[:400])
    write_delimited(tmp_path / "b.csv", rows[400:])
    files = f"{{by: files, files: {{train: '{tmp_path}/a.csv', test: '{tmp_path}/b.csv'}}}}"
    import_table("", str(tmp_path / "files"), spec=str(write_spec(tmp_path / "f.yaml", split=files)))
    assert read(tmp_path / "files", "train").num_rows == 400 and read(tmp_path / "files", "test").num_rows == 200
    assert not (tmp_path / "files" / "valid").exists()


def test_simple_tables_import_from_command_line_options(imported, tmp_path, capsys):
    rows, _, _, _ = imported
    src = write_delimited(tmp_path / "clicks.csv", rows)
    out = tmp_path / "out"
    assert main(["data", "import", "table", str(src), str(out), "--label", "click",
                 "--categorical", "user_id,item_id,city", "--numeric", "price", "--sequence", "hist_items",
                 "--group-key", "user_id", "--split", "0.9,0.1,0.0"]) == 0
    schema = FeatureSchema.load(str(out / "schema.yaml"))
    assert schema.sparse_names == ["user_id", "item_id", "city", "hist_items"] and schema.labels == ("click",)
    assert read(out, "train").num_rows + read(out, "valid").num_rows == ROWS and not (out / "test").exists()
    prices = read(out, "train")["price"].to_numpy()
    assert abs(prices.mean()) < 1e-3 and math.isclose(prices.std(), 1.0, rel_tol=0.1)  # standardised
    with pytest.raises(ConfigError, match="--label and --spec exclude each other"):
        import_table(str(src), str(tmp_path / "x"), spec="s.yaml", label="click")
    with pytest.raises(ConfigError, match="unknown key"):
        import_table(str(src), str(tmp_path / "x"), spec=str(write_spec(tmp_path / "bad.yaml", extra="labels: [x]\n")))


def test_a_table_on_s3(imported, s3_server, s3_bucket, monkeypatch, tmp_path):
    import fsspec

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    rows, out, _, tmp = imported
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": s3_server})
    fs.put(str(tmp / "clicks.csv"), f"{s3_bucket}/in/clicks.csv")
    fs.put(str(tmp / "spec.yaml"), f"{s3_bucket}/spec.yaml")
    import_table(f"{s3_bucket}/in/*.csv", f"{s3_bucket}/out", spec=f"{s3_bucket}/spec.yaml")
    fs.get(f"{s3_bucket}/out", str(tmp_path / "out"), recursive=True)
    for split in SPLITS:
        assert read(tmp_path / "out", split).equals(read(out, split))
    assert load_transform(f"{s3_bucket}/out").vocabularies["item_id"].values == \
        load_transform(str(out)).vocabularies["item_id"].values
