"""Conure tasks from RecBole atomic datasets other than ml-100k: implicit feedback without a
.user file (Amazon-like), ml-1m-style profile codes, profile columns chosen by option, and the
errors for a missing .user file, column or label."""

import csv

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from distrec.errors import DataError
from distrec.methods import load_config
from distrec.methods.conure.importers.recbole import import_conure_recbole, task_names


def rows(path):
    return pq.read_table(path).to_pylist()


def ml100k_inter(shared_data, users=40):
    with open(shared_data / "ml-100k" / "ml-100k.inter") as fh:
        inter = list(csv.reader(fh, delimiter="\t"))[1:]
    keep = sorted({r[0] for r in inter}, key=int)[:users]
    return [r for r in inter if r[0] in keep]


def write_implicit(folder, inter):
    """user, item, timestamp only (no rating, no .user file), rows shuffled."""
    folder.mkdir(parents=True)
    order = np.random.default_rng(0).permutation(len(inter))
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"{inter[i][0]}\t{inter[i][1]}\t{inter[i][3]}" for i in order]
    (folder / f"{folder.name}.inter").write_text("\n".join(lines) + "\n")


def test_implicit_dataset_without_profiles_gives_t1_and_t2(tmp_path, shared_data):
    inter = ml100k_inter(shared_data)
    write_implicit(tmp_path / "amz", inter)
    import_conure_recbole(str(tmp_path / "amz"), str(tmp_path / "out"), max_len=1000, profiles="")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["t1_next_item", "t2_liked_item"]
    history = {}
    for r in sorted(inter, key=lambda r: (r[0], float(r[3]))):
        history.setdefault(r[0], []).append(r[1])
    item_id = {}  # ids follow first appearance in the (shuffled) file
    for line in (tmp_path / "amz" / "amz.inter").read_text().splitlines()[1:]:
        item_id.setdefault(line.split("\t")[1], len(item_id) + 1)
    # ties in time keep file order: compare as multisets per user
    t1 = sorted(sorted(r["item_seq"]) for r in rows(tmp_path / "out" / "t1_next_item" / "test"))
    assert t1 == sorted(sorted(item_id[i] for i in h) for h in history.values())
    # no rating: every item is "liked", so train users give one T2 row per position after the first
    t2 = sum(len(rows(tmp_path / "out" / "t2_liked_item" / s)) for s in ("train", "valid", "test"))
    task = yaml.safe_load((tmp_path / "out" / "t2_liked_item" / "task.yaml").read_text())
    assert task["kind"] == "item_rec" and task["num_outputs"] == len(item_id) + 1
    train_rows = rows(tmp_path / "out" / "t2_liked_item" / "train")
    assert len(train_rows) < t2 <= sum(len(h) - 1 for h in history.values())


def test_profile_tasks_from_chosen_columns_and_ml1m_age_codes(tmp_path, shared_data):
    inter = ml100k_inter(shared_data)
    users = sorted({r[0] for r in inter}, key=int)
    codes = [1, 18, 25, 35, 45, 50, 56]  # ml-1m's age codes: each the start of its band
    folder = tmp_path / "ml1m"
    folder.mkdir()
    (folder / "ml1m.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                       + "".join("\t".join(r) + "\n" for r in inter))
    user_rows = {u: (str(codes[i % 7]), "MF"[i % 2], str(i % 21), ["uk", "de", "fr"][i % 3]) for i, u in enumerate(users)}
    (folder / "ml1m.user").write_text("user_id:token\tage:token\tgender:token\toccupation:token\tcountry:token\n"
                                      + "".join(f"{u}\t" + "\t".join(v) + "\n" for u, v in user_rows.items()))
    out = tmp_path / "out"
    import_conure_recbole(str(folder), str(out), max_len=1000, profiles="age,country")
    assert task_names("age,country") == ["t1_next_item", "t2_liked_item", "t3_age", "t4_country"]
    assert sorted(p.name for p in out.iterdir()) == task_names("age,country")
    age = yaml.safe_load((out / "t3_age" / "task.yaml").read_text())["classes"]
    country = yaml.safe_load((out / "t4_country" / "task.yaml").read_text())["classes"]
    assert age == ["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"] and country == ["de", "fr", "uk"]
    # every user's label: the band of its code, and its country's sorted-class index
    length_to_users = {}
    for u in users:
        length_to_users.setdefault(sum(r[0] == u for r in inter), []).append(u)
    seen = 0
    for split in ("train", "valid", "test"):
        for a, c in zip(rows(out / "t3_age" / split), rows(out / "t4_country" / split)):
            assert a["item_seq"] == c["item_seq"]
            candidates = length_to_users[len(a["item_seq"])]
            assert any(codes.index(int(user_rows[u][0])) == a["label"] and country.index(user_rows[u][3]) == c["label"]
                       for u in candidates)
            seen += 1
    assert seen == len(users)


def test_errors_name_the_missing_file_column_or_label(tmp_path, shared_data):
    inter = ml100k_inter(shared_data, users=10)
    write_implicit(tmp_path / "amz", inter)
    with pytest.raises(DataError, match=r"amz: the \.user file is missing; the profile tasks \['gender', 'age', "
                                        r"'occupation'\] need it \(pass profiles='' to import only T1 and T2\)"):
        import_conure_recbole(str(tmp_path / "amz"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    users = sorted({r[0] for r in inter})
    (tmp_path / "amz" / "amz.user").write_text("user_id:token\tgender:token\n" + "".join(f"{u}\tM\n" for u in users[:-1])
                                              + f"{users[-1]}\t\n")
    with pytest.raises(DataError, match=r"amz\.user.*'age'"):
        import_conure_recbole(str(tmp_path / "amz"), str(tmp_path / "out2"), profiles="gender,age")
    with pytest.raises(DataError, match=r"amz\.user: column 'gender' is empty for 1 user\(s\)"):
        import_conure_recbole(str(tmp_path / "amz"), str(tmp_path / "out3"), profiles="gender")
    # profiles are checked before any task is written
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out3").exists()


def test_prepare_passes_importer_options_from_the_config(tmp_path, shared_data):
    from distrec.methods.conure.tasks import prepare_tasks

    write_implicit(tmp_path / "amz", ml100k_inter(shared_data, users=30))
    cfg = load_config("configs/conure/recbole-items.yaml", [
        f"method.prepare.src={tmp_path}/amz", f"method.data_root={tmp_path}/tasks", "method.prepare.max_len=20"])
    prepare_tasks(cfg)
    assert sorted(p.name for p in (tmp_path / "tasks").iterdir()) == [t.name for t in cfg.method.tasks]
