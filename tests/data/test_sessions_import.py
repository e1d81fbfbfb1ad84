"""The sessions importer streams its source twice: the split is by sequence, chunks are balanced
by sequence and nest, results do not depend on buffer or block sizes, and a bad line fails clean."""

import itertools

import numpy as np
import pyarrow.parquet as pq
import pytest

from distrec.data.importers import common, sessions
from distrec.data.importers.common import WriteOptions
from distrec.data.importers.sessions import import_sessions, write_sequence_splits
from distrec.errors import ConfigError, DataError
from distrec.storage import list_parquet_files

SPLITS = ("valid", "test")


def write_sessions(path, lengths, pad_every=0):
    """One line per sequence s: tokens s{s}_{j}, so every item names its sequence and position.
    Some lines get left padding, a blank line follows every 10th, and the last line has no newline."""
    lines = []
    for s, n in enumerate(lengths):
        pads = ["0"] * (s % 3) if pad_every and s % pad_every == 0 else []
        lines.append(",".join(pads + [f"s{s}_{j}" for j in range(n)]) + ("\n" if s % 10 else "\n \r\n"))
    path.write_text("".join(lines).rstrip("\n"))
    return path


def read_rows(path) -> list[list[int]]:
    return [row for f in list_parquet_files(str(path)) for row in pq.read_table(f)["item_seq"].to_pylist()]


def decoded(out, split):
    """Rows of ``out/split`` as lists of (sequence, position), through items.parquet."""
    items = pq.read_table(out / "items.parquet").to_pydict()
    token = dict(zip(items["item_id"], items["raw_item_id"]))
    return [[tuple(int(x) for x in token[i][1:].split("_")) for i in row] for row in read_rows(out / split)]


def sequences_of(rows):
    return [row[0][0] for row in rows]


@pytest.mark.parametrize("cl_chunks", [1, 3, 5])
def test_each_sequence_lands_in_one_split_and_chunks_are_balanced_nested_sets(tmp_path, cl_chunks):
    rng = np.random.default_rng(7)
    lengths = rng.integers(1, 30, size=203)  # some single items: dropped
    src = write_sessions(tmp_path / "s.csv", lengths, pad_every=4)
    out = tmp_path / "out"
    import_sessions(str(src), str(out), max_len=6, cl_chunks=cl_chunks, seed=3)

    kept = [s for s, n in enumerate(lengths) if n >= 2]
    chunks = [decoded(out, f"train/chunk-{c}") for c in range(cl_chunks)]
    held_out = {name: decoded(out, name) for name in SPLITS}
    by_split = [set(sequences_of(rows)) for rows in chunks] + [set(sequences_of(held_out[n])) for n in SPLITS]
    assert sum(map(len, by_split)) == len(kept) and set().union(*by_split) == set(kept)  # disjoint, complete

    # the documented split: permutation ranks -> train (chunk r * k // n_train), valid, test
    order = np.random.default_rng(3).permutation(len(kept))
    n_train, n_valid = round(0.8 * len(kept)), round(0.1 * len(kept))
    expected = [{kept[order[r]] for r in range(n_train) if r * cl_chunks // n_train == c} for c in range(cl_chunks)]
    assert [set(sequences_of(rows)) for rows in chunks] == expected
    assert by_split[-2:] == [{kept[i] for i in order[n_train:n_train + n_valid]}, {kept[i] for i in order[n_train + n_valid:]}]
    sizes = [len(s) for s in expected]
    assert max(sizes) - min(sizes) <= 1

    for rows in chunks:
        assert sequences_of(rows) == sorted(sequences_of(rows))  # file order
        for s in set(sequences_of(rows)):
            windows = [row for row in rows if row[0][0] == s]
            assert all(2 <= len(w) <= 6 for w in windows)
            assert all(a[-1] == b[0] for a, b in itertools.pairwise(windows))  # overlap by one item
            rebuilt = windows[0] + [item for w in windows[1:] for item in w[1:]]
            assert rebuilt == [(s, j) for j in range(lengths[s])]
    for rows in held_out.values():
        assert sequences_of(rows) == sorted(sequences_of(rows))
        assert all(row == [(row[0][0], j) for j in range(max(0, lengths[row[0][0]] - 6), lengths[row[0][0]])]
                   for row in rows)


def test_chunks_grow_by_adding_sequences_to_the_same_training_set(tmp_path):
    src = write_sessions(tmp_path / "s.csv", [5 + s % 17 for s in range(120)])
    train = {}
    for k in (2, 4):
        import_sessions(str(src), str(tmp_path / f"k{k}"), max_len=4, cl_chunks=k, seed=11)
        train[k] = [set(sequences_of(decoded(tmp_path / f"k{k}", f"train/chunk-{c}"))) for c in range(k)]
    assert set().union(*train[2]) == set().union(*train[4])  # the split does not depend on cl_chunks
    grown = [set().union(*train[4][:k]) for k in range(1, 5)]
    assert all(a < b for a, b in itertools.pairwise(grown))


def test_tiny_row_groups_and_text_blocks_give_the_same_tables(tmp_path, monkeypatch):
    src = write_sessions(tmp_path / "s.csv", [2 + s % 23 for s in range(150)], pad_every=5)
    import_sessions(str(src), str(tmp_path / "default"), max_len=5, cl_chunks=3)
    monkeypatch.setattr(sessions, "TEXT_BLOCK_BYTES", 7)  # shorter than a line: blocks end mid-line
    handed_over = []
    write = common.PartWriter.write
    monkeypatch.setattr(common.PartWriter, "write", lambda self, t: handed_over.append(t.num_rows) or write(self, t))
    import_sessions(str(src), str(tmp_path / "tiny"), max_len=5, cl_chunks=3, row_group_size=2)
    assert max(handed_over) == 2  # the importer buffers at most a row group per writer
    for split in ("train/chunk-0", "train/chunk-1", "train/chunk-2", "valid", "test"):
        default, tiny = (list_parquet_files(str(tmp_path / run / split)) for run in ("default", "tiny"))
        assert pq.read_table(tiny[0]).equals(pq.read_table(default[0])) and len(tiny) == len(default) == 1
        assert [pq.ParquetFile(f[0]).metadata.num_row_groups > 1 for f in (default, tiny)] == [False, True]
    items = [pq.read_table(tmp_path / run / "items.parquet") for run in ("default", "tiny")]
    assert items[0].equals(items[1])
    assert (tmp_path / "tiny" / "schema.yaml").read_text() == (tmp_path / "default" / "schema.yaml").read_text()


@pytest.mark.parametrize("block_bytes", [sessions.TEXT_BLOCK_BYTES, 100])
def test_a_bad_token_deep_in_the_file_names_its_line_and_leaves_nothing(tmp_path, monkeypatch, block_bytes):
    monkeypatch.setattr(sessions, "TEXT_BLOCK_BYTES", block_bytes)
    src = tmp_path / "bad.csv"
    lines = [f"{i},{i + 1},{i + 2}" for i in range(5000)]
    lines[3999] = "7, 8,,9"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"bad.csv line 4000: empty item token at position 3; expected comma"):
        import_sessions(str(src), str(out))
    assert not out.exists() or not any(out.rglob("*"))


def test_a_failure_while_writing_removes_what_was_written(tmp_path, monkeypatch):
    seqs = [np.arange(1, 4 + s % 11, dtype=np.int64) for s in range(300)]
    out, windows, calls, written = tmp_path / "out", sessions._windows, itertools.count(), []

    def windows_until_the_disk_fills(seq, max_len):
        if next(calls) == 200:
            written.extend(out.rglob("part-*.parquet"))
            raise OSError("disk full")
        return windows(seq, max_len)

    monkeypatch.setattr(sessions, "_windows", windows_until_the_disk_fills)
    small_parts = WriteOptions(row_group_size=4, rows_per_file=16)
    with pytest.raises(OSError, match="disk full"):
        write_sequence_splits(seqs, 14, str(out), max_len=4, options=small_parts)
    assert written and [p for p in out.rglob("*") if p.is_file()] == []


def test_write_sequence_splits_takes_a_list_but_refuses_a_one_shot_iterator(tmp_path):
    seqs = [np.arange(1, 3 + s % 7, dtype=np.int64) for s in range(30)]
    write_sequence_splits(seqs, 10, str(tmp_path / "list"), max_len=4, cl_chunks=2)
    assert len(read_rows(tmp_path / "list" / "valid")) == 3
    with pytest.raises(ConfigError, match="read twice"):
        write_sequence_splits(iter(seqs), 10, str(tmp_path / "iter"))

    class Shrinking:  # yields fewer sequences each time it is read
        def __init__(self):
            self.reads = 0

        def __iter__(self):
            self.reads += 1
            return iter(seqs[self.reads:])

    with pytest.raises(DataError, match=r"(\d+) sequences of 2\+ items on the first pass, (?!\1)\d+ on the second"):
        write_sequence_splits(Shrinking(), 10, str(tmp_path / "changed"))
    assert not any((tmp_path / "changed").rglob("*.parquet"))


def test_a_session_file_that_changes_between_the_passes_is_refused(tmp_path):
    src = tmp_path / "s.csv"
    src.write_text("a,b\nc,d\n")
    source = sessions._SessionText(str(src), "0")
    assert [list(s) for s in source] == [[1, 2], [3, 4]]
    src.write_text("a,b\nc,e\n")
    with pytest.raises(DataError, match="s.csv: the file changed while importing"):
        list(source)
