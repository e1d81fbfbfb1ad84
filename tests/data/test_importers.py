"""Importers on the real samples in shared/data: counts, labels and ids checked against the raw
files (recomputed with pandas), history without leakage, splits, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from distrec.data.importers import (
    IMPORTERS,
    common,
    import_aliccp,
    import_criteo,
    import_recbole,
)
from distrec.data.schema import FeatureSchema
from distrec.errors import DataError


def read_split(out: Path, split: str) -> pd.DataFrame:
    return pq.read_table(out / split).to_pandas()


def assert_ids_in_range(out: Path, schema: FeatureSchema, splits=("train", "valid", "test")):
    for split in splits:
        table = pq.read_table(out / split)
        for f in schema.sparse:
            col = table.column(f.name)
            ids = col.combine_chunks().flatten() if f.multi_hot else col
            values = ids.to_numpy()
            assert values.min(initial=0) >= 0 and values.max(initial=0) < f.num_embeddings, f.name
        for s in schema.sequence:
            values = table.column(s.name).combine_chunks().flatten().to_numpy()
            assert values.max(initial=0) < schema.field(s.table).num_embeddings


def assert_clean(out: Path) -> None:
    """A failed import leaves neither part files, temp files nor a schema behind."""
    left = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert left == []


def assert_round_trip(out: Path, schema: FeatureSchema) -> None:
    assert FeatureSchema.load(str(out / "schema.yaml")) == schema


# --- RecBole / ml-100k ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ml100k(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ml100k")
    schema = import_recbole(str(shared_data / "ml-100k"), str(out))
    raw = pd.read_csv(shared_data / "ml-100k" / "ml-100k.inter", sep="\t")
    raw.columns = ["user", "item", "rating", "timestamp"]
    return out, schema, raw


def _with_raw_ids(out: Path, split: str) -> pd.DataFrame:
    rows = read_split(out, split)
    users = pq.read_table(out / "users.parquet", columns=["user_id", "raw_user_id"]).to_pandas()
    items = pq.read_table(out / "items.parquet", columns=["item_id", "raw_item_id"]).to_pandas()
    rows = rows.merge(users, on="user_id").merge(items, on="item_id")
    rows["user"] = rows.raw_user_id.astype(int)
    rows["item"] = rows.raw_item_id.astype(int)
    return rows


def test_recbole_counts_labels_and_schema(ml100k):
    out, schema, raw = ml100k
    sizes = {s: pq.read_metadata(next((out / s).glob("part-*.parquet"))).num_rows
             for s in ("train", "valid", "test")}
    assert sum(sizes.values()) == len(raw) == 100_000
    assert sizes["valid"] == sizes["test"] == raw.user.nunique() == 943
    both = pd.concat([_with_raw_ids(out, s) for s in ("train", "valid", "test")])
    merged = both.merge(raw, on=["user", "item"], suffixes=("", "_raw"))
    assert len(merged) == 100_000  # every source interaction exactly once
    np.testing.assert_array_equal(merged.click, (merged.rating_raw >= 4).astype(np.float32))
    np.testing.assert_array_equal(merged.timestamp, merged.timestamp_raw)
    assert schema.group_key == "user_id" and schema.labels == ("click",)
    assert schema.field("class").multi_hot and schema.sequence[0].table == "item_id"
    assert {"release_year", "age", "gender", "occupation", "zip_code"} <= set(schema.sparse_names)
    assert_ids_in_range(out, schema)
    assert_round_trip(out, schema)


def test_recbole_leave_last_out(ml100k):
    out, _, raw = ml100k
    latest = raw.groupby("user").timestamp.max()
    test = _with_raw_ids(out, "test").set_index("user")
    valid = _with_raw_ids(out, "valid").set_index("user")
    train = _with_raw_ids(out, "train")
    assert (test.timestamp == latest.loc[test.index]).all()
    assert (valid.timestamp <= test.timestamp.loc[valid.index]).all()
    assert (train.timestamp.to_numpy() <= valid.timestamp.loc[train.user].to_numpy()).all()


def test_recbole_history_strictly_precedes(ml100k):
    out, schema, raw = ml100k
    items = pq.read_table(out / "items.parquet", columns=["item_id", "raw_item_id"]).to_pandas()
    to_raw = dict(zip(items.item_id, items.raw_item_id.astype(int)))
    rows = pd.concat([_with_raw_ids(out, s) for s in ("train", "valid", "test")])
    max_len = schema.sequence[0].max_len
    for user in (1, 7, 405, 655, 943):
        mine = raw[raw.user == user].sort_values("timestamp", kind="stable")
        for row in rows[rows.user == user].itertuples():
            earlier = mine[mine.timestamp < row.timestamp].item.tolist()[-max_len:]
            assert [to_raw[i] for i in row.hist_item_id] == earlier


def test_recbole_side_files_and_sequences(ml100k):
    out, _, raw = ml100k
    items = pq.read_table(out / "items.parquet").to_pandas().set_index("raw_item_id")
    assert items.loc["1", "text"] == "Toy Story | 1995 | Animation, Children's, Comedy"
    users = pq.read_table(out / "users.parquet").to_pandas().set_index("raw_user_id")
    assert users.loc["2", ["raw_gender", "raw_occupation"]].tolist() == ["F", "other"]
    seqs = read_split(out, "sequences")
    assert len(seqs) == 943 and seqs.item_seq.map(len).sum() == 100_000
    assert all((np.diff(ts) >= 0).all() for ts in seqs.ts_seq)


def test_recbole_global_time_split(shared_data, tmp_path):
    import_recbole(str(shared_data / "ml-100k"), str(tmp_path), split="time",
                   time_split=(0.8, 0.1, 0.1), max_history=5)
    parts = {s: read_split(tmp_path, s) for s in ("train", "valid", "test")}
    assert [len(p) for p in parts.values()] == [80_000, 10_000, 10_000]
    assert parts["train"].timestamp.max() <= parts["valid"].timestamp.min()
    assert parts["valid"].timestamp.max() <= parts["test"].timestamp.min()
    assert parts["test"].hist_item_id.map(len).max() == 5


def test_recbole_implicit_feedback_negatives(shared_data, tmp_path):
    raw = pd.read_csv(shared_data / "ml-100k" / "ml-100k.inter", sep="\t").head(3000)
    src = tmp_path / "implicit"
    src.mkdir()
    raw[["user_id:token", "item_id:token", "timestamp:float"]].to_csv(
        src / "implicit.inter", sep="\t", index=False)
    out = tmp_path / "out"
    schema = import_recbole(str(src), str(out), negatives_per_positive=2, seed=1)
    rows = pd.concat([read_split(out, s) for s in ("train", "valid", "test")])
    assert (rows.click == 1).sum() == 3000 and (rows.click == 0).sum() == 6000
    assert "rating" not in rows.columns
    seen = set(zip(rows.user_id[rows.click == 1], rows.item_id[rows.click == 1]))
    negatives = rows[rows.click == 0]
    assert not seen & set(zip(negatives.user_id, negatives.item_id))
    assert negatives.item_id.between(1, schema.field("item_id").num_embeddings - 1).all()


# --- Ali-CCP --------------------------------------------------------------------------------------


SPLIT_FILES = {"train": "ali_ccp_train_sample.csv", "valid": "ali_ccp_val_sample.csv",
               "test": "ali_ccp_test_sample.csv"}


@pytest.fixture(scope="module")
def aliccp(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("aliccp")
    return out, import_aliccp(str(shared_data / "ali-ccp"), str(out)), shared_data / "ali-ccp"


def test_aliccp_matches_source(aliccp):
    out, schema, src = aliccp
    assert schema.labels == ("click", "purchase") and schema.group_key == "f_101"
    assert len(schema.sparse) == 23 and len(schema.dense) == 8
    assert "f_150_14" in schema.sparse_names and "d_109_14" in schema.dense
    raw_all = pd.concat([pd.read_csv(src / f) for f in SPLIT_FILES.values()])
    mine_all = pd.concat([read_split(out, s) for s in SPLIT_FILES])
    for split, name in SPLIT_FILES.items():
        raw, mine = pd.read_csv(src / name), read_split(out, split)
        assert len(mine) == len(raw) == {"train": 100, "valid": 50, "test": 50}[split]
        np.testing.assert_array_equal(mine[["click", "purchase"]], raw[["click", "purchase"]])
        np.testing.assert_array_equal(mine.d_853, raw.D853.astype(np.float32))
    for col in ("101", "205", "853"):  # one id per distinct raw value, and back
        pairs = pd.DataFrame({"raw": raw_all[col].to_numpy(), "id": mine_all[f"f_{col}"].to_numpy()})
        assert (pairs.groupby("raw").id.nunique() == 1).all()
        assert (pairs.groupby("id").raw.nunique() == 1).all()
        assert pairs.id.min() >= 1
    assert_ids_in_range(out, schema)
    assert_round_trip(out, schema)


def test_aliccp_large_fields_switch_to_hashing(aliccp, tmp_path):
    _, _, src = aliccp
    schema = import_aliccp(str(src), str(tmp_path), max_vocab=16)
    big = {f.name for f in schema.sparse if f.hash}
    assert {"f_205", "f_207"} <= big and "f_101" not in big
    assert all(f.num_embeddings <= 16 for f in schema.sparse)
    assert_ids_in_range(tmp_path, schema)
    hashed = import_aliccp(str(src), str(tmp_path / "h"), hash_all=True, max_vocab=1000)
    assert all(f.hash and f.num_embeddings == 1000 for f in hashed.sparse)
    assert read_split(tmp_path / "h", "train").f_205.between(1, 999).all()


def _copy_with(src: Path, dst: Path, edit) -> None:
    lines = src.read_text().splitlines()
    dst.write_text("\n".join(edit(lines)) + "\n")


def test_aliccp_missing_label_column(aliccp, tmp_path):
    _, _, src = aliccp
    data = tmp_path / "data"
    data.mkdir()
    for name in SPLIT_FILES.values():
        _copy_with(src / name, data / name, lambda ls: ls)
    _copy_with(src / SPLIT_FILES["test"], data / SPLIT_FILES["test"],
               lambda ls: [ls[0].replace("click,", "clk,", 1)] + ls[1:])
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"ali_ccp_test_sample\.csv.*'click'"):
        import_aliccp(str(data), str(out))
    assert_clean(out)


def test_aliccp_non_numeric_dense_value(aliccp, tmp_path, monkeypatch):
    _, _, src = aliccp
    monkeypatch.setattr(common, "CSV_BLOCK_BYTES", 1024)  # several blocks per file
    data = tmp_path / "data"
    data.mkdir()
    for name in SPLIT_FILES.values():
        _copy_with(src / name, data / name, lambda ls: ls)

    def spoil(lines):
        col = lines[0].split(",").index("D109_14")
        fields = lines[39].split(",")
        fields[col] = "abc"
        return lines[:39] + [",".join(fields)] + lines[40:]

    _copy_with(src / SPLIT_FILES["valid"], data / SPLIT_FILES["valid"], spoil)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"ali_ccp_val_sample\.csv: column 'D109_14' on line 40"):
        # small parts: train's are committed and one of valid's is in flight when it fails
        import_aliccp(str(data), str(out), row_group_size=16, rows_per_file=32)
    assert_clean(out)


# --- Criteo ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def criteo_csv(shared_data):
    return shared_data / "criteo" / "criteo_sample.txt"


def test_criteo_matches_source(criteo_csv, tmp_path):
    raw = pd.read_csv(criteo_csv)
    schema = import_criteo(str(criteo_csv), str(tmp_path), valid_fraction=0.0, hash_size=1000)
    mine = read_split(tmp_path, "train")
    assert len(mine) == 200 and schema.group_key is None
    np.testing.assert_array_equal(mine.click, raw.label.astype(np.float32))
    for i in (1, 2, 5, 13):
        expected = np.log1p(raw[f"I{i}"].fillna(0).clip(lower=0)).astype(np.float32)
        np.testing.assert_allclose(mine[f"i{i}"], expected, rtol=1e-6)
    for c in (1, 20, 26):
        missing = raw[f"C{c}"].isna().to_numpy()
        ids = mine[f"c{c}"].to_numpy()
        assert (ids[missing] == 0).all() and ((ids[~missing] >= 1) & (ids[~missing] < 1000)).all()
        pairs = pd.DataFrame({"raw": raw[f"C{c}"], "id": ids}).dropna()
        assert (pairs.groupby("raw").id.nunique() == 1).all()
    assert all(f.hash and f.num_embeddings == 1000 for f in schema.sparse)
    assert_round_trip(tmp_path, schema)


def test_criteo_tsv_without_header_matches_csv(criteo_csv, tmp_path):
    lines = criteo_csv.read_text().splitlines()[1:]
    tsv = tmp_path / "train.txt"
    tsv.write_text("".join(line.replace(",", "\t") + "\n" for line in lines))
    a = import_criteo(str(criteo_csv), str(tmp_path / "a"))
    b = import_criteo(str(tsv), str(tmp_path / "b"))
    assert a == b
    for split in ("train", "valid"):
        assert pq.read_table(tmp_path / "a" / split).equals(pq.read_table(tmp_path / "b" / split))
    sizes = [pq.read_metadata(next((tmp_path / "a" / s).glob("*.parquet"))).num_rows
             for s in ("train", "valid")]
    assert sum(sizes) == 200 and 0 < sizes[1] < 50
    assert_ids_in_range(tmp_path / "a", a, splits=("train", "valid"))


def test_criteo_last_rows_split_and_limit(criteo_csv, tmp_path):
    raw = pd.read_csv(criteo_csv)
    import_criteo(str(criteo_csv), str(tmp_path), split="last", valid_fraction=0.1,
                  test_fraction=0.1, limit_rows=150)
    parts = {s: read_split(tmp_path, s) for s in ("train", "valid", "test")}
    assert [len(p) for p in parts.values()] == [120, 15, 15]
    np.testing.assert_array_equal(parts["test"].click, raw.label[135:150].astype(np.float32))


# --- errors shared by all importers -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(IMPORTERS))
def test_missing_input_names_the_path(name, tmp_path):
    missing = tmp_path / "no-such-input.txt"
    with pytest.raises(DataError, match="no-such-input"):
        IMPORTERS[name](str(missing), str(tmp_path / "out"))
    assert_clean(tmp_path / "out")


def test_refuses_to_mix_with_an_earlier_import(criteo_csv, tmp_path):
    import_criteo(str(criteo_csv), str(tmp_path))
    with pytest.raises(DataError, match="overwrite=True"):
        import_criteo(str(criteo_csv), str(tmp_path))
    import_criteo(str(criteo_csv), str(tmp_path), overwrite=True, valid_fraction=0.0)
    assert sorted(p.name for p in tmp_path.rglob("*.parquet")) == ["part-00000.parquet"]


def test_part_files_and_row_groups(criteo_csv, tmp_path):
    import_criteo(str(criteo_csv), str(tmp_path), valid_fraction=0.0, row_group_size=32,
                  rows_per_file=64)
    files = sorted((tmp_path / "train").glob("part-*.parquet"))
    assert [pq.read_metadata(f).num_rows for f in files] == [64, 64, 64, 8]
    assert pq.read_metadata(files[0]).num_row_groups == 2


# --- the produced Parquet feeds the training batch --------------------------------------------------


def test_outputs_convert_to_recbatch(ml100k, aliccp, criteo_csv, tmp_path):
    convert = pytest.importorskip("distrec.data.convert")
    import_criteo(str(criteo_csv), str(tmp_path))
    for out in (ml100k[0], aliccp[0], tmp_path):
        schema = FeatureSchema.load(str(out / "schema.yaml"))
        table = pq.read_table(out / "train").slice(0, 64)
        batch = convert.arrow_to_batch(table, schema, str(out / "train"))
        assert batch.batch_size == 64
        assert batch.sparse.keys() == schema.sparse_names
        assert batch.labels.shape == (64, len(schema.labels))
