"""Conure task datasets: the ml-100k task builder checked against the raw files, the TTL importer
against the example files, and clear errors for malformed TTL lines."""

import csv

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from distrec.errors import DataError
from distrec.methods.conure.importers.common import split_of_users
from distrec.methods.conure.importers.recbole import age_band, import_conure_recbole
from distrec.methods.conure.importers.ttl import import_conure_ttl


def rows(path):
    return pq.read_table(path).to_pylist()


@pytest.fixture(scope="module")
def ml100k_tasks(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cml")
    import_conure_recbole(str(shared_data / "ml-100k"), str(out), max_len=30)
    return out


def raw_ml100k(shared_data):
    with open(shared_data / "ml-100k" / "ml-100k.inter") as fh:
        inter = [r for r in csv.reader(fh, delimiter="\t")][1:]
    with open(shared_data / "ml-100k" / "ml-100k.user") as fh:
        users = {r[0]: r for r in list(csv.reader(fh, delimiter="\t"))[1:]}
    return inter, users


def test_ml100k_tasks_match_the_raw_files(shared_data, ml100k_tasks):
    inter, users = raw_ml100k(shared_data)
    item_id = {}
    for r in inter:
        item_id.setdefault(r[1], len(item_id) + 1)
    n_users = len({r[0] for r in inter})
    # T1 test: every user's whole history (last 30 items), in time order
    t1 = rows(ml100k_tasks / "t1_next_item" / "test")
    assert len(t1) == n_users
    history = {}
    for i, r in sorted(enumerate(inter), key=lambda x: (x[1][0], float(x[1][3]), x[0])):
        history.setdefault(r[0], []).append((item_id[r[1]], float(r[2])))
    expected = sorted(tuple(i for i, _ in h[-30:]) for h in history.values())
    assert sorted(tuple(r["item_seq"]) for r in t1) == expected
    # T2: every target is an item the user rated >= 4, right after its source sequence
    by_prefix = {}
    for h in history.values():
        items = [i for i, _ in h]
        for p, (item, rating) in enumerate(h):
            by_prefix.setdefault((tuple(items[:p][-30:]), item), []).append(rating)
    for split in ("train", "valid", "test"):
        for r in rows(ml100k_tasks / "t2_liked_item" / split)[:500]:
            ratings = by_prefix[(tuple(r["item_seq"]), r["target"])]
            assert max(ratings) >= 4
    # T3/T4/T5: labels decoded back equal the .user values of a user with that history
    seq_to_user = {tuple(i for i, _ in h[-30:]): u for u, h in history.items()}
    for task, column, decode in (("t3_gender", 2, lambda v: v), ("t4_age", 1, lambda v: int(age_band(np.array([int(v)]))[0])),
                                 ("t5_occupation", 3, lambda v: v)):
        classes = yaml.safe_load((ml100k_tasks / task / "task.yaml").read_text())["classes"]
        total = 0
        for split in ("train", "valid", "test"):
            for r in rows(ml100k_tasks / task / split):
                raw = users[seq_to_user[tuple(r["item_seq"])]][column]
                label = r["label"] if task == "t4_age" else classes[r["label"]]
                assert label == decode(raw)
                total += 1
        assert total == n_users


def test_ttl_example_imports_as_next_item_and_item_rec(shared_data, tmp_path):
    src = shared_data / "ttl-example"
    lines = [line.strip().split(",") for line in (src / "example_task2.csv").read_text().splitlines() if line.strip()]
    import_conure_ttl(str(src / "example_task1.csv"), str(tmp_path / "t1"))
    t1_schema = yaml.safe_load((tmp_path / "t1" / "schema.yaml").read_text())
    n_items = t1_schema["sequence"][0]["num_embeddings"]
    import_conure_ttl(str(src / "example_task2.csv"), str(tmp_path / "t2"), kind="item_rec",
                            num_items=n_items)
    test = rows(tmp_path / "t1" / "test")
    sources = [[int(v) for v in line[:100] if v != "0"] for line in lines]
    assert sorted(r["item_seq"] for r in test) == sorted(s for s in sources if len(s) >= 2)
    pairs = {(tuple(int(v) for v in line[:100] if v != "0"), int(t)) for line in lines for t in line[101:]}
    got = [(tuple(r["item_seq"]), r["target"]) for s in ("train", "valid", "test") for r in rows(tmp_path / "t2" / s)]
    assert len(got) == sum(len(line) - 101 for line in lines) and set(got) == pairs
    task = yaml.safe_load((tmp_path / "t2" / "task.yaml").read_text())
    assert task == {"kind": "item_rec", "num_outputs": max(t for _, t in pairs) + 1}


@pytest.mark.parametrize("line, kind, message", [
    ("1,2,3", "next_item", "line 1 has 3 source ids"),
    (",".join(["0"] * 99 + ["5"]) + ",,x", "item_rec", "'x'; expected an integer"),
    (",".join(["0"] * 99 + ["5"]), "profile", "needs an empty field and then target"),
    (",".join(["0"] * 99 + ["5"]) + ",,1,2", "profile", "needs exactly one"),
])
def test_ttl_bad_lines_name_file_and_line(tmp_path, line, kind, message):
    src = tmp_path / "bad.csv"
    src.write_text(line + "\n")
    with pytest.raises(DataError, match=message) as info:
        import_conure_ttl(str(src), str(tmp_path / "out"), kind=kind)
    assert "bad.csv" in str(info.value)


def ttl_lines(shared_data):
    path = shared_data / "ttl-example" / "example_task2.csv"
    return [line.strip().split(",") for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def ttl_files(shared_data, tmp_path):
    """kind -> a TTL file of that kind: the shared examples, read in place, and a profile file
    made of example_task2's sources with one label each."""
    profile = tmp_path / "profile.csv"
    profile.write_text("".join(",".join(line[:100] + ["", str(i % 3 * 7)]) + "\n"
                               for i, line in enumerate(ttl_lines(shared_data))))
    src = shared_data / "ttl-example"
    return {"next_item": src / "example_task1.csv", "item_rec": src / "example_task2.csv", "profile": profile}


def import_ttl(src, out, **options):
    import_conure_ttl(str(src), str(out), num_items=3000, **options)
    return {str(p.relative_to(out)): pq.read_table(p) if p.suffix == ".parquet" else p.read_text()
            for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", ["next_item", "item_rec", "profile"])
def test_ttl_block_size_does_not_change_the_output(ttl_files, tmp_path, kind):
    default = import_ttl(ttl_files[kind], tmp_path / "default", kind=kind, max_len=20)
    small = import_ttl(ttl_files[kind], tmp_path / "small", kind=kind, max_len=20, block_lines=3)
    assert default.keys() == small.keys() and len(default) == 5
    for name, table in default.items():
        assert small[name] == table if isinstance(table, str) else small[name].equals(table), name
    assert all(default[f"{s}/part-00000.parquet"].num_rows for s in ("train", "valid", "test"))


@pytest.mark.parametrize("kind", ["item_rec", "profile"])
def test_ttl_rows_keep_file_order_in_each_split(ttl_files, tmp_path, kind):
    lines = [line.strip().split(",") for line in ttl_files[kind].read_text().splitlines()]
    got = import_ttl(ttl_files[kind], tmp_path / "out", kind=kind, max_len=5, seed=3, block_lines=4)
    classes = sorted({int(line[101]) for line in lines})
    part = split_of_users(len(lines), 0.1, 0.1, 3)
    label = "target" if kind == "item_rec" else "label"
    for i, split in enumerate(("train", "valid", "test")):
        expected = [{"item_seq": [int(v) for v in line[:100] if v != "0"][-5:],
                     label: int(t) if kind == "item_rec" else classes.index(int(t))}
                    for line, p in zip(lines, part) if p == i for t in line[101:]]
        assert got[f"{split}/part-00000.parquet"].to_pylist() == expected


@pytest.mark.parametrize("bad, message", [
    ("x", "line 10 has 'x'; expected an integer id"),
    ("-4", "line 10 has a negative id"),
    ("", "line 10 has 99 source ids before the first empty field"),
])
def test_ttl_bad_line_after_the_first_block_names_file_and_line(shared_data, tmp_path, bad, message):
    lines = [",".join(line) for line in ttl_lines(shared_data)]
    fields = lines[9].split(",")
    fields[50] = bad
    src = tmp_path / "deep.csv"
    src.write_text("\n".join(lines[:5] + [""] + lines[5:8] + [",".join(fields)] + lines[8:]) + "\n")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=message) as info:
        import_conure_ttl(str(src), str(out), kind="item_rec", block_lines=3)
    assert str(src) in str(info.value)
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))
