"""benchmarks/import_path.py in tiny mode: every importer ran on its generated input, and the rows
the script reports are the rows each importer really wrote.

The expected row counts are computed here from the generated input files themselves (lines,
per-user interaction counts, ids per TTL line, tokens per session line), independently of the
importers, and compared with the Parquet output read back here and with the script's JSON.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from test_benchmarks import MACHINE_KEYS  # noqa: E402

IMPORTERS = {"criteo", "aliccp", "aliccp_raw", "recbole", "conure_recbole", "conure_ttl", "sessions", "table",
             "interactions"}
GROWS_BY_DESIGN = {"recbole", "conure_recbole", "interactions"}
BALLAST_MIB = 512


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from benchmarks import import_path

    out = tmp_path_factory.mktemp("import-path")
    work = out / "work"
    # The parent holds BALLAST_MIB while the children run: a child's ru_maxrss starts from the
    # parent's peak on Linux, so a peak read that way would report more than the ballast.
    ballast = np.ones(BALLAST_MIB << 17)  # noqa: F841 - touched, so resident
    returned = import_path.main(["--tiny", "--out-dir", str(out), "--work-dir", str(work)])
    del ballast
    path = out / "import_path.json"
    assert path.is_file(), "import_path.json not written"
    data = json.loads(path.read_text())
    assert data["benchmark"] == returned["benchmark"] == "import_path"
    assert MACHINE_KEYS <= set(data["machine"]), MACHINE_KEYS - set(data["machine"])
    assert data["machine"]["gpu"] is False and data["settings"]["tiny"] is True
    return data, work


def data_lines(path: Path, header_lines: int = 0) -> list[str]:
    lines = path.read_text().split("\n")
    assert lines[-1] == "", f"{path}: no newline at the end"
    return [line for line in lines[header_lines:-1]]


def written(out: Path) -> dict[str, int]:
    """Rows in every Parquet folder (or top-level file) under ``out``, read back here."""
    rows: dict[str, int] = defaultdict(int)
    for f in out.rglob("*.parquet"):
        key = f.relative_to(out).parent.as_posix()
        rows[f.name if key == "." else key] += pq.read_table(f).num_rows
    return dict(rows)


def expected_rows(importer: str, src: Path) -> tuple[int, dict]:
    """(input rows, {output folder or a tuple of folders whose rows add up: expected rows})."""
    if importer == "criteo":
        lines = data_lines(src)
        assert all(len(line.split("\t")) == 40 for line in lines)
        return len(lines), {("train", "valid"): len(lines)}
    if importer == "aliccp":
        lines = data_lines(src)
        sample = REPO.parent / "shared" / "data" / "ali-ccp" / "ali_ccp_train_sample.csv"
        if sample.is_file():
            assert lines[0] == sample.read_text().split("\n")[0].strip()
        return len(lines) - 1, {("train",): len(lines) - 1}
    if importer == "aliccp_raw":
        skeleton = data_lines(src / "sample_skeleton_train.csv")
        keys = {line.split(",")[0] for line in data_lines(src / "common_features_train.csv")}
        assert all(line.split(",")[3] in keys for line in skeleton)
        return len(skeleton), {("train", "valid"): len(skeleton)}
    if importer in ("recbole", "conure_recbole"):
        inter = [line.split("\t") for line in data_lines(src / "synth.inter", header_lines=1)]
        per_user = Counter(user for user, *_ in inter)
        users = len(data_lines(src / "synth.user", header_lines=1))
        assert set(per_user) <= {line.split("\t")[0] for line in data_lines(src / "synth.user", 1)}
        at_least = {k: sum(c >= k for c in per_user.values()) for k in (2, 3, 4)}
        if importer == "recbole":
            return len(inter), {("train", "valid", "test"): len(inter), ("sequences",): len(per_user),
                                ("test",): at_least[2], ("valid",): at_least[3], ("users.parquet",): users,
                                ("items.parquet",): len(data_lines(src / "synth.item", 1))}
        expect = {("t1_next_item/train",): at_least[4], ("t1_next_item/valid",): at_least[3],
                  ("t1_next_item/test",): at_least[2]}
        for task in ("t3_gender", "t4_age", "t5_occupation"):
            expect[tuple(f"{task}/{s}" for s in ("train", "valid", "test"))] = len(per_user)
        return len(inter), expect
    if importer == "conure_ttl":
        ids = [sum(f != "0" for f in line.split(",")) for line in data_lines(src)]
        assert all(len(line.split(",")) == 100 for line in data_lines(src))
        return len(ids), {("test",): sum(c >= 2 for c in ids), ("valid",): sum(c >= 3 for c in ids),
                          ("train",): sum(c >= 4 for c in ids)}
    if importer == "sessions":
        seqs = [[t for t in line.split(",") if t != "0"] for line in data_lines(src)]
        assert max(map(len, seqs)) <= 50  # the default max_len: one row per kept sequence
        kept = sum(len(s) >= 2 for s in seqs)
        splits = ("valid", "test", *(f"train/chunk-{c}" for c in range(5)))
        return len(seqs), {splits: kept, ("items.parquet",): len({t for s in seqs for t in s})}
    if importer == "table":
        lines = data_lines(src, header_lines=1)  # vocabularies: of the training rows only, not checked here
        return len(lines), {("train", "valid", "test"): len(lines)}
    if importer == "interactions":
        lines = data_lines(src)
        per_session = Counter(line.split(",")[0] for line in lines)
        splits = ("valid", "test", *(f"train/chunk-{c}" for c in range(5)))
        assert max(per_session.values()) <= 50  # the default max_len: one row per kept session
        kept = {s for s, c in per_session.items() if c >= 2}
        return len(lines), {splits: len(kept), ("items.parquet",): len({line.split(",")[2] for line in lines
                                                                         if line.split(",")[0] in kept})}
    raise AssertionError(importer)


def liked_positions(src: Path) -> tuple[int, int]:
    """conure_recbole T2: (users with a liked item after their first, liked items after the first)."""
    by_user = defaultdict(list)
    for i, (user, _, rating, ts) in enumerate(line.split("\t")
                                              for line in data_lines(src / "synth.inter", header_lines=1)):
        by_user[user].append((float(ts), i, float(rating)))
    counts = [sum(r >= 4.0 for _, _, r in sorted(rows)[1:]) for rows in by_user.values()]
    return sum(c > 0 for c in counts), sum(counts)


def test_every_importer_measured(run):
    data, _ = run
    assert set(data["results"]) == IMPORTERS == set(data["summary"])
    assert set(data["expected_to_grow_by_design"]) == GROWS_BY_DESIGN
    assert data["settings"]["scale"] == 4


@pytest.mark.parametrize("importer", sorted(IMPORTERS))
def test_rows_written_match_the_input(run, importer):
    data, work = run
    r = data["results"][importer]
    assert list(r["sizes"]) == ["N", "4N"]
    for label, size in r["sizes"].items():
        src = work / size["src"]
        rows_in, expect = expected_rows(importer, src)
        assert size["rows"] == rows_in > 0, (label, size["rows"], rows_in)
        on_disk = written(work / size["out"])
        assert size["rows_out"] == on_disk, (label, size["rows_out"], on_disk)
        for folders, n in expect.items():
            assert all(f in on_disk for f in folders), (label, folders, sorted(on_disk))
            assert sum(on_disk[f] for f in folders) == n, (label, folders, {f: on_disk[f] for f in folders}, n)
        if importer == "conure_recbole":
            users_liked, liked = liked_positions(src)
            t2 = sum(on_disk[f"t2_liked_item/{s}"] for s in ("train", "valid", "test"))
            assert users_liked <= t2 <= liked, (label, users_liked, t2, liked)
    assert r["sizes"]["4N"]["rows"] == 4 * r["sizes"]["N"]["rows"]


@pytest.mark.parametrize("importer", sorted(IMPORTERS))
def test_numbers_positive_and_verdict_consistent(run, importer):
    data, _ = run
    r = data["results"][importer]
    for label, size in r["sizes"].items():
        assert size["wall_s"] > 0 and size["process_wall_s"] >= size["wall_s"], label
        assert size["rows_per_s"] > 0 and size["input_mib"] > 0, label
        assert size["rows_per_s"] == pytest.approx(size["rows"] / size["wall_s"], rel=0.02), label  # wall_s rounded
        # the child's own peak (tiny input: near its ~150 MiB baseline), not the parent's ballast
        assert 10 < size["baseline_rss_mib"] <= size["peak_rss_mib"] < BALLAST_MIB, label
        if sys.platform == "linux":
            assert size["rss_source"] == "VmHWM", label
    small, large = r["sizes"]["N"]["peak_rss_mib"], r["sizes"]["4N"]["peak_rss_mib"]
    assert r["rss_ratio"] == pytest.approx(large / small, abs=1e-3)
    assert r["verdict"] == ("flat" if r["rss_ratio"] < 1.5 else "grows")
    assert r["expected"] == ("grows" if importer in GROWS_BY_DESIGN else "flat")
    assert r["as_expected"] == (r["verdict"] == r["expected"])
    assert data["summary"][importer]["rss_ratio"] == r["rss_ratio"]
