"""Sequence data for StackRec: the session-format importer, recbole sequences, the long-range generator."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from distrec.data.importers import IMPORTERS
from distrec.data.importers.sessions import cl_chunk_glob
from distrec.data.schema import FeatureSchema
from distrec.errors import DataError
from distrec.methods.stackrec.config import SyntheticSequencesConfig
from distrec.methods.stackrec.synthetic import long_range_sequences
from distrec.storage import list_parquet_files


def read_rows(path) -> list[list[int]]:
    return [row for f in list_parquet_files(str(path)) for row in pq.read_table(f)["item_seq"].to_pylist()]


def test_session_file_import_splits_windows_and_nested_chunks(tmp_path):
    src = tmp_path / "sessions.csv"
    lines = ["0,0,a,b,c"] + [",".join(f"i{(s * 7 + j) % 23}" for j in range(3 + s % 9)) for s in range(40)]
    src.write_text("\n".join(lines) + "\n")
    schema = IMPORTERS["sessions"](str(src), str(tmp_path / "out"), max_len=5, cl_chunks=4, seed=1)
    assert schema.sequence[0].name == "item_seq" and schema.sequence[0].max_len == 5
    assert schema.sequence[0].num_embeddings == 23 + 3 + 1 and schema.labels == ()
    assert FeatureSchema.load(str(tmp_path / "out" / "schema.yaml")) == schema
    train = read_rows(tmp_path / "out" / "train")
    valid, test = read_rows(tmp_path / "out" / "valid"), read_rows(tmp_path / "out" / "test")
    assert len(valid) == 4 and len(test) == 4  # 41 sequences: round(32.8) = 33 train, 4, 4
    assert all(2 <= len(r) <= 5 for r in train + valid + test) and all(0 not in r for r in train)
    chunks = [read_rows(tmp_path / "out" / "train" / f"chunk-{c}") for c in range(4)]
    assert sum(map(len, chunks)) == len(train) and all(chunks)  # balanced by sequence: test_sessions_import.py
    nested = [len(list_parquet_files(cl_chunk_glob(str(tmp_path / "out" / "train"), k))) for k in (1, 2, 4)]
    assert nested == [1, 2, 4]


def test_windows_overlap_by_one_item(tmp_path):
    src = tmp_path / "one.csv"
    src.write_text("\n".join([",".join(str(i) for i in range(1, 12))] * 10) + "\n")
    IMPORTERS["sessions"](str(src), str(tmp_path / "out"), max_len=4, split=(1.0, 0.0, 0.0), cl_chunks=1,
                          pad_token="none")
    rows = read_rows(tmp_path / "out" / "train")
    assert rows[:4] == [[1, 2], [2, 3, 4, 5], [5, 6, 7, 8], [8, 9, 10, 11]]


def test_bad_session_line_names_file_and_line(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("1,2,3\n4,,5\n")
    with pytest.raises(DataError, match=r"bad.csv line 2: empty item token at position 2"):
        IMPORTERS["sessions"](str(src), str(tmp_path / "out"))


def test_recbole_sequences_of_ml100k_become_next_item_splits(shared_data, tmp_path):
    IMPORTERS["recbole"](str(shared_data / "ml-100k"), str(tmp_path / "rb"), max_history=0)
    schema = IMPORTERS["sessions"](str(tmp_path / "rb" / "sequences"), str(tmp_path / "seq"), max_len=50)
    users = read_rows(tmp_path / "rb" / "sequences")
    assert len(users) == 943 and schema.sequence[0].num_embeddings == 1683
    held_out = read_rows(tmp_path / "seq" / "valid") + read_rows(tmp_path / "seq" / "test")
    last_items = {tuple(u[-50:]) for u in users}
    assert len(held_out) == 189 and all(tuple(r) in last_items for r in held_out)


def test_long_range_generator_follows_its_rule():
    spec = SyntheticSequencesConfig(num_sequences=3000, length=40, num_items=500, long_lag=30,
                                    p_long=0.5, p_short=0.3, seed=3)
    x = np.stack(long_range_sequences(spec))
    assert x.shape == (3000, 40) and x.min() >= 1 and x.max() < 500
    rng = np.random.default_rng(3)  # the generator's maps are its first two draws
    long_map = np.r_[0, rng.permutation(499) + 1]
    short_map = np.r_[0, rng.permutation(499) + 1]
    tail = slice(30, 40)
    follows_long = (x[:, tail] == long_map[x[:, 0:10]]).mean()
    follows_short = (x[:, tail] == short_map[x[:, 29:39]]).mean()
    assert 0.47 < follows_long < 0.53 and 0.27 < follows_short < 0.33
