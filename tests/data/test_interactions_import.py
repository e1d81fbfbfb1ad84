"""`distrec data import interactions`: YooChoose- and Diginetica-style logs -> one time-ordered
item sequence per session, in the layout of `distrec data import sessions`."""

from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest
from byo_files import diginetica_views, yoochoose_clicks

from distrec.cli import main
from distrec.data.importers.interactions import import_interactions
from distrec.data.schema import FeatureSchema
from distrec.storage import list_parquet_files

HELD_OUT = ("valid", "test")


def rows(out, split) -> list[list[str]]:
    """Rows of ``out/split`` as raw item tokens, through items.parquet."""
    items = pq.read_table(out / "items.parquet").to_pydict()
    token = dict(zip(items["item_id"], items["raw_item_id"]))
    return [[token[i] for i in row] for f in list_parquet_files(str(out / split))
            for row in pq.read_table(f)["item_seq"].to_pylist()]


def train_rows(out):
    return [r for f in sorted((out / "train").glob("chunk-*")) for r in rows(out, f.relative_to(out))]


def expected_sequences(path, session, item, time, delimiter, header, drop_repeats=False):
    """Each session's items ordered by time (ties: file order), computed here from the text."""
    events = defaultdict(list)
    lines = path.read_text().splitlines()[1 if header else 0:]
    for n, line in enumerate(lines):
        f = line.split(delimiter)
        when = float(f[time]) if f[time].isdigit() else f[time]  # ISO times sort as text
        events[f[session]].append((when, n, f[item]))
    out = {}
    for s, evs in events.items():
        seq = [i for _, _, i in sorted(evs)]
        if drop_repeats:
            seq = [x for k, x in enumerate(seq) if k == 0 or seq[k - 1] != x]
        out[s] = seq
    return out


def test_a_yoochoose_log_becomes_time_ordered_sessions(tmp_path):
    src = yoochoose_clicks(tmp_path / "yoochoose-clicks.dat", sessions=80)
    out = tmp_path / "out"
    schema = import_interactions(str(src), str(out), columns="0,2,1", max_len=50)
    expected = expected_sequences(src, 0, 2, 1, ",", header=False)
    kept = [seq for seq in expected.values() if len(seq) >= 2]
    held_out = [r for split in HELD_OUT for r in rows(out, split)]
    got = sorted(train_rows(out) + held_out)
    assert got == sorted(kept)  # every session of 2+ events, once, in time order
    (field,) = schema.sequence
    assert field.name == "item_seq" and field.num_embeddings == len({i for s in kept for i in s}) + 1
    assert FeatureSchema.load(str(out / "schema.yaml")) == schema


def test_a_diginetica_log_is_detected_and_split_by_time(tmp_path, capsys):
    src = diginetica_views(tmp_path / "train-item-views.csv", sessions=80)
    out = tmp_path / "out"
    assert main(["data", "import", "interactions", str(src), str(out), "--split-by", "time",
                 "--drop-repeats", "--max-items", "5"]) == 0  # delimiter ';', header, columns: detected
    expected = expected_sequences(src, 0, 2, 3, ";", header=True, drop_repeats=True)
    last_time = {}
    for line in src.read_text().splitlines()[1:]:
        f = line.split(";")
        last_time[f[0]] = max(last_time.get(f[0], -1), int(f[3]))
    kept = {s: seq[-5:] for s, seq in expected.items() if len(seq) >= 2}
    by_time = sorted(kept, key=lambda s: last_time[s])
    n_train, n_valid = round(0.8 * len(kept)), round(0.1 * len(kept))
    assert sorted(rows(out, "test")) == sorted(kept[s] for s in by_time[n_train + n_valid:])
    assert sorted(rows(out, "valid")) == sorted(kept[s] for s in by_time[n_train:n_train + n_valid])
    assert sorted(train_rows(out)) == sorted(kept[s] for s in by_time[:n_train])


def test_rare_items_and_short_sessions_are_dropped(tmp_path):
    src = tmp_path / "log.tsv"
    lines = ["user\titem\ttimestamp"]
    rng = np.random.default_rng(0)
    for user in range(50):
        for t in range(int(rng.integers(1, 7))):
            lines.append(f"u{user}\t{'rare' + str(user) if t == 0 else 'i' + str(int(rng.integers(0, 5)))}\t{100 - t}")
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    import_interactions(str(src), str(out), min_item_count=2, min_items=3)
    every = train_rows(out) + [r for s in HELD_OUT for r in rows(out, s)]
    assert every and all(len(r) >= 3 for r in every)
    assert not any(t.startswith("rare") for r in every for t in r)
    with pytest.raises(Exception, match="min_items >= 2"):
        import_interactions(str(src), str(tmp_path / "x"), min_items=1)
