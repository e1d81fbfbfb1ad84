"""Synthetic data: layout, determinism, power-law ids, learnable labels, atomic files."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distrec.commands.data import parse_options, register
from distrec.config.schema import SynthConfig
from distrec.data import synth
from distrec.data.schema import FeatureSchema
from distrec.storage import list_parquet_files

CFG = SynthConfig(rows=12000, rows_per_file=5000, rows_per_row_group=2000, num_sparse=4, num_dense=2,
                  num_embeddings=200, multi_hot=1, zipf_a=1.2, num_users=100, seed=1)


def _read(out: str) -> pa.Table:
    return pa.concat_tables(pq.read_table(f) for f in list_parquet_files(out))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth"))
    schema = synth.write_synthetic(out, CFG, progress=False)
    return out, schema, _read(out)


def test_layout_and_schema_file(data):
    out, schema, table = data
    assert sorted(os.listdir(out)) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet", "schema.yaml"]
    assert [pq.ParquetFile(f).metadata.num_rows for f in list_parquet_files(out)] == [5000, 5000, 2000]
    assert [pq.ParquetFile(f"{out}/part-00000.parquet").metadata.row_group(i).num_rows for i in range(3)] == [
        2000, 2000, 1000,
    ]
    assert FeatureSchema.load(f"{out}/schema.yaml") == schema
    assert schema.sparse_names == ["user_id", "c0", "c1", "c2", "c3"] and schema.group_key == "user_id"
    assert schema.field("c0").multi_hot and not schema.field("c1").multi_hot
    assert table["row_id"].to_pylist() == list(range(CFG.rows))
    lengths = pa.compute.list_value_length(table["c0"]).to_numpy()
    assert lengths.min() >= 1 and lengths.max() <= 5
    for f in schema.sparse:
        ids = pa.compute.list_flatten(table[f.name]) if f.multi_hot else table[f.name]
        assert pa.compute.min(ids).as_py() >= 0 and pa.compute.max(ids).as_py() < f.num_embeddings


def test_same_seed_same_bytes_other_seed_other_data(tmp_path, data):
    out, _, table = data
    again = str(tmp_path / "again")
    synth.write_synthetic(again, CFG, progress=False)
    for name in ("part-00000.parquet", "part-00002.parquet", "schema.yaml"):
        assert Path(out, name).read_bytes() == Path(again, name).read_bytes()
    other = str(tmp_path / "other")
    synth.write_synthetic(other, SynthConfig(**{**CFG.__dict__, "seed": 2, "rows": 3000}), progress=False)
    assert _read(other)["c1"].to_pylist() != table["c1"].slice(0, 3000).to_pylist()


def test_ids_follow_a_power_law_with_field_specific_favourites(data):
    _, _, table = data
    tops = []
    for name in ("c1", "c2", "c3"):
        counts = np.bincount(table[name].to_numpy(), minlength=CFG.num_embeddings)
        share = counts.max() / counts.sum()
        assert share > 20 / CFG.num_embeddings  # uniform would give 1/num_embeddings
        assert (counts > 0).sum() > CFG.num_embeddings // 2  # and the tail is still used
        tops.append(int(counts.argmax()))
    assert len(set(tops)) == 3


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1)
    pos = labels == 1
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


def test_labels_are_learnable_from_ids(data):
    """Per-id smoothed log-odds fitted on the first rows rank held-out rows well above chance."""
    _, _, table = data
    y = table["click"].to_numpy().astype(np.float64)
    train, test = slice(0, 9000), slice(9000, None)
    prior = y[train].mean()
    score = np.zeros(CFG.rows - 9000)
    for name in ("user_id", "c1", "c2", "c3"):
        ids = table[name].to_numpy()
        n = np.bincount(ids[train], minlength=CFG.num_embeddings)
        k = np.bincount(ids[train], weights=y[train], minlength=CFG.num_embeddings)
        p = (k + 10 * prior) / (n + 10)
        score += np.log(p / (1 - p))[ids[test]]
    assert 0.1 < prior < 0.6
    assert _auc(score, y[test]) > 0.6


def test_failure_midway_leaves_only_complete_parts(tmp_path, monkeypatch):
    real = synth._row_group
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # the second row group of part-00001
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "_row_group", failing)
    out = tmp_path / "out"
    cfg = SynthConfig(rows=9000, rows_per_file=3000, rows_per_row_group=1500, num_sparse=2, num_dense=1, seed=0)
    with pytest.raises(OSError, match="disk full"):
        synth.write_synthetic(str(out), cfg, progress=False)
    assert sorted(os.listdir(out)) == ["part-00000.parquet"]  # no partial part, no temp, no schema
    assert pq.ParquetFile(out / "part-00000.parquet").metadata.num_rows == 3000


def test_writes_to_s3(s3_server, s3_bucket):
    out = f"{s3_bucket}/synth"
    small = SynthConfig(rows=3000, rows_per_file=2000, rows_per_row_group=1000, num_sparse=2, num_dense=1)
    schema = synth.write_synthetic(out, small, s3_endpoint_url=s3_server, progress=False)
    assert schema.source == f"{out}/schema.yaml"
    files = list_parquet_files(out, s3_server)
    assert files == [f"{out}/part-00000.parquet", f"{out}/part-00001.parquet"]


def test_cli_synth_and_import_errors(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="distrec")
    register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "cli"
    args = parser.parse_args(["data", "synth", "--out", str(out), "--rows", "500", "--rows-per-file", "200",
                              "--num-sparse", "2", "--no-progress"])
    assert args.func(args) == 0
    assert sorted(os.listdir(out))[-1] == "schema.yaml" and len(os.listdir(out)) == 4
    args = parser.parse_args(["data", "synth", "--out", str(out), "--rows", "0"])
    assert args.func(args) == 2
    assert "error: synth.rows must be > 0" in capsys.readouterr().err
    args = parser.parse_args(["data", "import", "no-such-format", "src", str(out), "--max-rows", "5"])
    assert args.func(args) == 2
    assert "error:" in capsys.readouterr().err
    assert parse_options(["--max-rows", "5", "--sep=\t", "--fast"]) == {"max_rows": 5, "sep": "\t", "fast": True}


def test_import_options_are_checked_listed_and_parsed(tmp_path, capsys, shared_data):
    import inspect

    from distrec.cli import main
    from distrec.methods import importers

    IMPORTERS = importers()

    out = tmp_path / "criteo"
    code = main(["data", "import", "criteo", str(shared_data / "criteo" / "criteo_sample.txt"), str(out),
                 "--hash-sizee", "10"])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "error: criteo import: unknown option(s) --hash-sizee; its options: --hash-size, " in err
    # --help lists every format with each of its options and default
    with pytest.raises(SystemExit):
        main(["data", "import", "--help"])
    text = capsys.readouterr().out
    for name, importer in IMPORTERS.items():
        assert f"  {name}: " in text
        for option in inspect.signature(importer).parameters:
            if option not in ("src", "out"):
                assert f"--{option.replace('_', '-')} " in text, (name, option)
    assert "--profiles gender,age,occupation " in text and "--num-items null " in text
    # comma-separated numbers become a tuple (sessions' split); other lists stay text
    assert parse_options(["--split", "0.7,0.2,0.1", "--profiles", "gender,age", "--num-items", "null"]) == {
        "split": (0.7, 0.2, 0.1), "profiles": "gender,age", "num_items": None}
    assert main(["data", "import", "criteo", str(shared_data / "criteo" / "criteo_sample.txt"), str(out),
                 "--hash-size", "1000", "--valid-fraction", "0.25"]) == 0
