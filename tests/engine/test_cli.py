"""The command line: `distrec plan`, and bad input failing early with one clear error."""


import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distrec.cli import main


def data_overrides(data):
    return [f"data.train={data / 'train'}", f"data.valid={data / 'valid'}",
            f"data.schema={data / 'train' / 'schema.yaml'}", "data.synth.rows=2000",
            "data.synth.valid_rows=500", "data.synth.rows_per_file=1000", "data.test=null"]


@pytest.fixture
def synth_data(tmp_path):
    data = tmp_path / "data"
    assert main(["plan", "configs/ctr/smoke.yaml", *data_overrides(data)]) == 0  # generates the data
    return data


def run_fails(tmp_path, capsys, *overrides):
    code = main(["run", "configs/ctr/smoke.yaml", f"run.output_dir={tmp_path / 'runs'}", *overrides])
    err = capsys.readouterr().err
    assert code == 2
    assert not (tmp_path / "runs").exists()  # nothing written for a run that never started
    return err


def test_plan_prints_every_table_and_rank(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["plan", "configs/ctr/smoke.yaml", *data_overrides(data), "--world-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "sharding plan: 4 ranks" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("user_id", "c"))]
    by_table = {}
    for table, kind, rank, *_ in rows:
        by_table.setdefault(table, []).append((kind, int(rank)))
    assert set(by_table) == {"user_id", "c0", "c1", "c2", "c3", "c4", "c5"}
    assert {r for _, r in by_table["c0"]} == {0, 1, 2, 3}  # row-wise: a shard on every rank
    assert by_table["c2"] == [("table_wise", by_table["c2"][0][1])]  # table-wise: one rank
    assert {k for k, _ in by_table["c1"]} == {"column_wise"}
    per_rank = out.split("embedding MiB")[1].splitlines()[1:]
    assert [int(line.split()[0]) for line in per_rank if line.strip()] == [0, 1, 2, 3]


def test_unknown_config_key(tmp_path, capsys):
    err = run_fails(tmp_path, capsys, "trainer.num_wokers=2")
    assert "trainer.num_wokers" in err and "num_workers" in err and "command line" in err


def test_missing_training_data(tmp_path, capsys, synth_data):
    err = run_fails(tmp_path, capsys, *data_overrides(synth_data)[:3], "data.synth=null",
                    f"data.train={tmp_path / 'nowhere'}")
    assert str(tmp_path / "nowhere") in err


def test_corrupt_parquet_footer(tmp_path, capsys, synth_data):
    victim = synth_data / "train" / "part-00001.parquet"
    victim.write_bytes(victim.read_bytes()[:-100])
    err = run_fails(tmp_path, capsys, *data_overrides(synth_data))
    assert "part-00001.parquet" in err


def test_schema_mismatch_names_column(tmp_path, capsys, synth_data):
    victim = synth_data / "train" / "part-00000.parquet"
    table = pq.read_table(victim).drop_columns(["c3"])
    pq.write_table(table, victim)
    err = run_fails(tmp_path, capsys, *data_overrides(synth_data))
    assert "c3" in err and "part-00000.parquet" in err


def test_wrong_column_type_names_column(tmp_path, capsys, synth_data):
    victim = synth_data / "valid" / "part-00000.parquet"
    table = pq.read_table(victim)
    index = table.schema.get_field_index("c2")
    table = table.set_column(index, "c2", pa.array([str(v) for v in table["c2"].to_pylist()]))
    pq.write_table(table, victim)
    err = run_fails(tmp_path, capsys, *data_overrides(synth_data))
    assert "c2" in err and "part-00000.parquet" in err and "string" in err


@pytest.mark.parametrize("kind", ["data_parallel", "table_row_wise"])
def test_plan_honours_every_sharding_type(tmp_path, capsys, kind):
    data = tmp_path / "data"
    tables = ["user_id"] + [f"c{i}" for i in range(6)]
    overrides = [f"sharding.tables.{t}.sharding_types=[{kind}]" for t in tables]
    assert main(["plan", "configs/ctr/smoke.yaml", *data_overrides(data), *overrides]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(tuple(tables))]
    assert rows and {row[1] for row in rows} == {kind}
    assert {int(row[2]) for row in rows if row[0] == "c0"} == {0, 1}  # on both ranks


def test_unknown_sharding_type(tmp_path, capsys):
    code = main(["plan", "configs/ctr/smoke.yaml", *data_overrides(tmp_path / "data"),
                 "sharding.tables.c0.sharding_types=[row_wsie]"])
    assert code == 2
    err = capsys.readouterr().err
    assert "sharding.tables.c0" in err and "row_wsie" in err and "row_wise" in err


def test_table_row_wise_keeps_each_table_on_one_host(tmp_path, capsys):
    data = tmp_path / "data"
    tables = ["user_id"] + [f"c{i}" for i in range(6)]
    overrides = [f"sharding.tables.{t}.sharding_types=[table_row_wise]" for t in tables]
    assert main(["plan", "configs/ctr/smoke.yaml", *data_overrides(data), *overrides,
                 "--world-size", "4", "--local-world-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "4 ranks, 2 per host" in out
    ranks = {}
    for row in (line.split() for line in out.splitlines() if line.startswith(tuple(tables))):
        ranks.setdefault(row[0], set()).add(int(row[2]))
    assert set(ranks) == set(tables)
    assert all(r in ({0, 1}, {2, 3}) for r in ranks.values()), ranks  # both ranks of one host
    assert {min(r) for r in ranks.values()} == {0, 2}  # and the tables spread over both hosts
