"""Importer throughput and peak memory, each importer at N and 4N input rows.

    python benchmarks/import_path.py [--importers criteo sessions ...] [--rows-factor 0.5] [--tiny]

For every importer in ``distrec.methods.importers()`` (recbole, aliccp, aliccp_raw, criteo,
conure_recbole, conure_ttl, sessions, table, interactions) synthetic input in its public format is written to a
temporary folder at two sizes, N and ``--scale`` x N (default 4x) rows/lines:

  criteo          Kaggle/Terabyte TSV: label, 13 ints, 26 hex categoricals, no header (~5% empty)
  aliccp          preprocessed Ali-CCP CSV, the header of ../shared/data/ali-ccp/ali_ccp_train_sample.csv
                  (a built-in copy of it when the file is absent); one train file
  aliccp_raw      the raw release: sample_skeleton_train.csv + common_features_train.csv, features
                  ``field \\x02 id \\x03 value`` joined by ``\\x01``; one common record per 50 skeleton lines
                  (the release's ratio is ~1:58), so the common store grows with N (held by design)
  recbole,        RecBole atomic files: .inter (user_id:token item_id:token rating:float timestamp:float),
  conure_recbole  .item (release_year, class), .user (age, gender, occupation, zip_code); one user per
                  25 interactions on average
  conure_ttl      TTL next_item lines: 100 zero-left-padded source ids
  sessions        NextItNet session text: comma-separated item tokens, at most 50 a line
  table           a FuxiCTR/DeepCTR-like click CSV with a header: string user/item/category ids, a price
                  (~10% empty), a ``^``-joined history of 0-10 items, click, conversion, a timestamp;
                  imported by command-line options (vocabularies, standardised price, random split)
  interactions    a YooChoose-like click log: session,ISO timestamp,item,category, no header; one
                  session per 10 events on average (sessions grow with N, items fixed)
The id spaces (items, hash inputs, categorical vocabularies) are the same at both sizes, so a
vocabulary that fills up is not mistaken for per-row memory; users grow with N where the format
has them (recbole, aliccp_raw's common records). The default N (1.25M Criteo lines, 2.5M Ali-CCP
rows, 300k raw Ali-CCP / TTL lines, 1M RecBole interactions, 500k session lines, 1M table rows,
1M interaction lines) is past each
importer's warm-up and, for the CSV importers, past pyarrow's read-ahead (see READAHEAD): below
those sizes peak RSS still rises with the input even for a streaming importer.

Each import runs in a fresh child process, ``python -c <wrapper> data import FORMAT SRC OUT
[--option value]`` through ``distrec.cli.main`` (the path ``distrec data import`` takes). The
wrapper loads the importer modules, reads its peak RSS (the baseline: interpreter + pyarrow/
pandas/numpy), runs the import, reads its peak RSS again and writes it with the wall and CPU
seconds of the import call to a JSON file. Peak RSS is ``VmHWM`` of /proc/self/status, the
high-water mark of the child's own process image: ``getrusage(RUSAGE_SELF).ru_maxrss`` (and the
parent's RUSAGE_CHILDREN, and so /usr/bin/time-style wrappers run from a big parent) is NOT used
because Linux carries the parent's peak RSS over into the child at fork/exec (measured here: a
child of a 400 MiB parent reports ru_maxrss 426 MiB, VmHWM 11 MiB). ru_maxrss is still recorded,
and is the fallback where /proc is absent. The importers start no processes of their own.

Reported per importer: input rows, rows/s (input rows / wall seconds of the import call, child
start-up excluded), peak RSS at N and 4N, their ratio and a verdict: ``flat`` when the peak grows
< 1.5x while the input grows 4x, else ``grows``; plus the marginal bytes of peak RSS per extra
input row. By design recbole (int64 user/item/time arrays of the log plus a lexsort and the
vocabularies), conure_recbole (the same, plus a sequence per user) and interactions (session, item,
time per event, to order each session) hold the interaction log and are EXPECTED to grow; the
others stream (criteo, aliccp, table by design; conure_ttl, sessions, aliccp_raw's skeleton in
blocks) and are expected flat. The rows each import wrote are counted from its Parquet output.

Wall-clock rates are CPU absolutes on a shared machine (see load_avg in the JSON): indicative.
Writes benchmarks/results/import_path.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    REPO,
    add_common_args,
    machine_info,
    print_table,
    settings,
    write_report,
)

NAME = "import_path"
SHARED_DATA = REPO.parent / "shared" / "data"
IMPORTER_NAMES = ("criteo", "aliccp", "aliccp_raw", "recbole", "conure_recbole", "conure_ttl", "sessions", "table",
                  "interactions")
# N per importer, past each importer's warm-up (its first blocks and row groups: peak RSS still rises
# over the first ~300k TTL / raw Ali-CCP lines) and, for the CSV importers, past pyarrow's read-ahead
# (N's file > 256 MiB, see EXPECTED); the whole default run takes ~5 minutes on 2 cores
BASE_ROWS = {"criteo": 1_250_000, "aliccp": 2_500_000, "aliccp_raw": 300_000, "recbole": 1_000_000,
             "conure_recbole": 1_000_000, "conure_ttl": 300_000, "sessions": 500_000, "table": 1_000_000,
             "interactions": 1_000_000}
TINY_ROWS = {name: 300 for name in IMPORTER_NAMES}
DEFAULTS = dict(importers=list(IMPORTER_NAMES), scale=4, rounds=1, rows_factor=1.0)
TINY = dict(importers=list(IMPORTER_NAMES), scale=4, rounds=1, rows_factor=1.0)
FLAT_BELOW = 1.5  # peak RSS ratio (scale x N vs N) under which memory counts as flat
READAHEAD = ("pyarrow's streaming CSV reader queues up to 32 raw blocks ahead of the consumer (Arrow's background "
             "reader, kDefaultBackgroundMaxQ = 32; 8 MiB blocks here, so up to 256 MiB): peak RSS grows with the "
             "file until it is ~256 MiB, then stays flat. Measured once on this machine (pyarrow 26.0.1, a "
             "read-only pass over synthetic Criteo TSV): peak Arrow memory 150 MiB for a 123 MiB file, 285 MiB "
             "for 258 MiB, 323 MiB for 491 MiB and for 982 MiB. The default N puts both sizes past that point")
EXPECTED = {
    "criteo": ("flat", "streams CSV blocks; hashing, no vocabulary. " + READAHEAD),
    "aliccp": ("flat", "streams CSV blocks (two passes); vocabularies bounded by the (fixed) id spaces and "
                       "max_vocab. " + READAHEAD),
    "aliccp_raw": ("flat", "skeleton streamed in 8 MiB blocks; the common-features store (1 record per "
                           "50 lines here) is held by design and grows with it, slowly"),
    "recbole": ("grows", "by design: holds int64 user/item/time arrays of the whole interaction log "
                         "(~24 B per interaction) plus a lexsort, for each user's history"),
    "conure_recbole": ("grows", "by design: holds the .inter columns as arrays (~40 B per interaction) for "
                                "each user's sequence"),
    "conure_ttl": ("flat", "two streamed passes, block_lines (65,536) lines at a time"),
    "sessions": ("flat", "two streamed passes over 8 MiB text blocks; the item vocabulary is fixed here"),
    "table": ("flat", "two streamed passes over CSV blocks (statistics, then write); vocabularies bounded by the "
                      "fixed id spaces. " + READAHEAD),
    "interactions": ("grows", "by design: holds session code, item code and time of every event (24 B per "
                              "interaction) plus a lexsort and the session vocabulary, to build each session's "
                              "time-ordered sequence"),
}
# what the importer is told (progress lines are kept quiet; everything else is its default)
IMPORT_OPTIONS = {
    "criteo": [],
    "aliccp": [],
    "aliccp_raw": [],
    "recbole": [],
    "conure_recbole": [],
    "conure_ttl": ["--kind", "next_item"],
    "sessions": [],
    "table": ["--label", "click,conversion", "--categorical", "user_id,item_id,cate_id", "--numeric", "price",
              "--sequence", "hist_items"],
    "interactions": ["--columns", "0,2,1"],
}
QUIET = ["--progress-every-s", "1e9"]
TAKES_PROGRESS = {"criteo", "aliccp", "aliccp_raw", "recbole", "sessions", "table", "interactions"}
ALICCP_HEADER = ("click,purchase,101,121,122,124,125,126,127,128,129,205,206,207,210,216,508,509,702,853,301,"
                 "109_14,110_14,127_14,150_14,D109_14,D110_14,D127_14,D150_14,D508,D509,D702,D853")
SESSION_MAX_LEN = 50  # sessions' default max_len: no line is longer, so each sequence is one row
TTL_SOURCE_LEN = 100

# The child: loads the importers (baseline RSS), runs ``distrec data import`` in-process, reports.
CHILD = r"""
import json, resource, sys, time
report, argv = sys.argv[1], sys.argv[2:]


def status_kib():
    try:  # Linux: this process image's own high-water mark; ru_maxrss inherits the parent's at exec
        with open("/proc/self/status") as fh:
            return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in fh) if k in ("VmHWM", "VmRSS")}
    except OSError:
        return {}


import distrec.data.importers  # noqa: F401 - pyarrow, pandas, numpy: part of the baseline
from distrec.cli import main
before, before_status = resource.getrusage(resource.RUSAGE_SELF), status_kib()
start = time.perf_counter()
rc = main(argv)
wall = time.perf_counter() - start
after, after_status = resource.getrusage(resource.RUSAGE_SELF), status_kib()
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(report, "w") as fh:
    json.dump({"rc": rc, "wall_s": wall,
               "cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
               "source": "VmHWM" if "VmHWM" in after_status else "ru_maxrss",
               "baseline_rss_kib": before_status.get("VmHWM", before.ru_maxrss),
               "peak_rss_kib": after_status.get("VmHWM", after.ru_maxrss),
               "ru_maxrss_kib": after.ru_maxrss, "grandchildren_peak_rss_kib": kids.ru_maxrss}, fh)
sys.exit(rc)
"""


# --- synthetic input ------------------------------------------------------------------------------


def _csv_writer(sink, schema, delimiter: str = ","):
    """Rows without a header, nothing quoted, nulls as empty fields."""
    import pyarrow.csv as pacsv

    return pacsv.CSVWriter(sink, schema, write_options=pacsv.WriteOptions(
        include_header=False, delimiter=delimiter, quoting_style="none"))


def _chunks(n: int, size: int = 100_000):
    for start in range(0, n, size):
        yield min(size, n - start)


def _joined_lines(values, lengths, sep: str = ","):
    """One string per line: ``values`` (ints) split by ``lengths`` and joined with ``sep``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    strings = pc.cast(pa.array(values, pa.int64()), pa.string())
    return pc.binary_join(pa.LargeListArray.from_arrays(pa.array(offsets), strings), sep)


def _write_lines(path: Path, lines, mode: str = "a") -> None:
    with open(path, mode) as fh:
        fh.write("\n".join(lines.to_pylist()) + "\n")


def gen_criteo(folder: Path, n: int, rng) -> str:
    """label, I1..I13 (small ints, some -1, ~10% empty), C1..C26 (8-hex tokens, ~5% empty)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    pools = [pa.array([f"{x:08x}" for x in rng.integers(0, 2**32, size=size)])
             for size in [(10, 1_000, 100_000)[i % 3] for i in range(26)]]
    names = ["label", *(f"I{i}" for i in range(1, 14)), *(f"C{i}" for i in range(1, 27))]
    schema = pa.schema([(c, pa.int64()) for c in names[:14]] + [(c, pa.string()) for c in names[14:]])
    path = folder / "train.txt"
    with open(path, "wb") as fh, _csv_writer(fh, schema, delimiter="\t") as writer:
        for rows in _chunks(n):
            cols = [pa.array((rng.random(rows) < 0.25).astype(np.int64))]
            for _ in range(13):
                cols.append(pa.array(rng.geometric(0.05, rows) - 2, mask=rng.random(rows) < 0.1))
            for pool in pools:
                idx = (len(pool) * rng.random(rows) ** 3).astype(np.int64)
                cols.append(pc.take(pool, pa.array(idx, mask=rng.random(rows) < 0.05)))
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))
    return str(path)


def aliccp_header() -> tuple[list[str], str]:
    sample = SHARED_DATA / "ali-ccp" / "ali_ccp_train_sample.csv"
    if sample.is_file():
        with open(sample) as fh:
            return fh.readline().strip().split(","), "../shared/data/ali-ccp/ali_ccp_train_sample.csv"
    return ALICCP_HEADER.split(","), "built-in copy of ali_ccp_train_sample.csv's header (file absent)"


ALICCP_CARDINALITY = {"101": 20_000, "205": 100_000, "206": 30_000, "207": 10_000, "210": 50_000,
                      "216": 10_000, "508": 10_000, "509": 10_000, "702": 10_000, "853": 10_000, "301": 3}


def gen_aliccp(folder: Path, n: int, rng) -> str:
    """click, purchase (only with a click), sparse ids 0..cardinality (0 = empty), D-values in [0, 1)."""
    import numpy as np
    import pyarrow as pa

    header, _ = aliccp_header()
    schema = pa.schema([(c, pa.float64() if c.startswith("D") else pa.int64()) for c in header])
    path = folder / "ali_ccp_train.csv"
    with open(path, "wb") as fh:
        fh.write((",".join(header) + "\n").encode())  # as in the sample: names unquoted
        writer = _csv_writer(fh, schema)
        for rows in _chunks(n):
            click = rng.random(rows) < 0.05
            cols = {"click": click.astype(np.int64), "purchase": (click & (rng.random(rows) < 0.1)).astype(np.int64)}
            for c in header[2:]:
                if c.startswith("D"):
                    cols[c] = np.round(rng.random(rows) * (rng.random(rows) < 0.6), 4)
                else:
                    card = ALICCP_CARDINALITY.get(c, 100)
                    cols[c] = (card * rng.random(rows) ** 2).astype(np.int64) * (rng.random(rows) < 0.9)
            writer.write_table(pa.table(cols, schema=schema))
        writer.close()
    return str(path)


RAW_USER_FIELDS = ("101", "121", "122", "124", "125", "126", "127", "128", "129")
RAW_USER_MULTI = ("109_14", "110_14", "127_14", "150_14")
RAW_ITEM_FIELDS = ("205", "206", "207", "210", "216", "301")
RAW_ITEM_MULTI = ("508", "509", "702", "853")
RAW_COMMON_EVERY = 50


def _raw_features(rng, single: tuple, multi: tuple, max_multi: int) -> str:
    parts = [f"{f}\x02{int(rng.integers(1, 50_000)) + 100_000 * i}\x031.0" for i, f in enumerate(single)]
    for j, f in enumerate(multi):
        for _ in range(int(rng.integers(0, max_multi + 1))):
            parts.append(f"{f}\x02{int(rng.integers(1, 20_000)) + 10_000_000 * (j + 1)}\x03"
                         f"{rng.random():.4f}")
    return "\x01".join(parts)


def gen_aliccp_raw(folder: Path, n: int, rng) -> str:
    """sample_skeleton_train.csv (n lines) + common_features_train.csv (n / 50 records, md5 keys)."""
    commons = max(1, n // RAW_COMMON_EVERY)
    keys = [hashlib.md5(f"common-{i}".encode()).hexdigest() for i in range(commons)]
    with open(folder / "common_features_train.csv", "w") as fh:
        for key in keys:
            feats = _raw_features(rng, RAW_USER_FIELDS, RAW_USER_MULTI, 10)
            fh.write(f"{key},{feats.count(chr(1)) + 1},{feats}\n")
    with open(folder / "sample_skeleton_train.csv", "w") as fh:
        for start in range(0, n, 50_000):
            lines = []
            rows = min(50_000, n - start)
            click = rng.random(rows) < 0.05
            buy = click & (rng.random(rows) < 0.1)
            key_of = rng.integers(0, commons, rows)
            for i in range(rows):
                feats = _raw_features(rng, RAW_ITEM_FIELDS, RAW_ITEM_MULTI, 2)
                lines.append(f"{start + i + 1},{int(click[i])},{int(buy[i])},{keys[key_of[i]]},"
                             f"{feats.count(chr(1)) + 1},{feats}")
            fh.write("\n".join(lines) + "\n")
    return str(folder)


OCCUPATIONS = ("administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
               "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other",
               "programmer", "retired", "salesman", "scientist", "student", "technician", "writer")
RECBOLE_ITEMS, RECBOLE_INTERACTIONS_PER_USER = 20_000, 25


def gen_recbole(folder: Path, n: int, rng) -> str:
    """<folder>/synth/synth.{inter,item,user}; users = n / 25 (at least 3), items fixed."""
    import numpy as np
    import pyarrow as pa

    users = max(3, n // RECBOLE_INTERACTIONS_PER_USER)
    items = min(RECBOLE_ITEMS, max(10, n // 5))
    root = folder / "synth"
    root.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()), ("rating", pa.int64()),
                        ("timestamp", pa.int64())])
    with open(root / "synth.inter", "wb") as fh:
        fh.write(b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        with _csv_writer(fh, schema, delimiter="\t") as writer:
            done = 0
            for rows in _chunks(n):
                # every user appears at least once (the first `users` rows), then any user
                user = rng.integers(1, users + 1, rows)
                first = np.arange(done, done + rows)
                user[first < users] = first[first < users] + 1
                done += rows
                writer.write_table(pa.table({
                    "user_id": user, "item_id": (items * rng.random(rows) ** 2).astype(np.int64) + 1,
                    "rating": rng.integers(1, 6, rows), "timestamp": 880_000_000 + rng.integers(0, 10**8, rows),
                }, schema=schema))
    years = rng.integers(1930, 2000, items)
    genres = rng.integers(0, 18, (items, 2))
    with open(root / "synth.item", "w") as fh:
        fh.write("item_id:token\trelease_year:token\tclass:token_seq\n")
        fh.write("".join(f"{i + 1}\t{years[i]}\tg{genres[i, 0]} g{genres[i, 1]}\n" for i in range(items)))
    ages = rng.integers(7, 74, users)
    gender = rng.random(users) < 0.7
    occ = rng.integers(0, len(OCCUPATIONS), users)
    zips = rng.integers(10_000, 99_999, users)
    with open(root / "synth.user", "w") as fh:
        fh.write("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n")
        fh.write("".join(f"{u + 1}\t{ages[u]}\t{'M' if gender[u] else 'F'}\t{OCCUPATIONS[occ[u]]}\t{zips[u]}\n"
                         for u in range(users)))
    return str(root)


TTL_ITEMS = 100_000


def gen_ttl(folder: Path, n: int, rng) -> str:
    """n lines of 100 comma-separated ids, the history (1-100 ids, mean ~30) left-padded with 0."""
    import numpy as np

    path = folder / "task1.csv"
    path.write_text("")
    items = min(TTL_ITEMS, max(20, n))
    for rows in _chunks(n, 50_000):
        lengths = np.minimum(rng.geometric(1 / 30, rows), TTL_SOURCE_LEN)
        padded = np.zeros((rows, TTL_SOURCE_LEN), dtype=np.int64)
        used = np.arange(TTL_SOURCE_LEN)[None, :] >= (TTL_SOURCE_LEN - lengths)[:, None]
        padded[used] = rng.integers(1, items, used.sum())
        _write_lines(path, _joined_lines(padded.ravel(), np.full(rows, TTL_SOURCE_LEN)))
    return str(path)


SESSION_ITEMS = 50_000


def gen_sessions(folder: Path, n: int, rng) -> str:
    """n lines of 1-50 item tokens (mean ~15), oldest first, popular items drawn more often."""
    import numpy as np

    path = folder / "sessions.csv"
    path.write_text("")
    items = min(SESSION_ITEMS, max(20, n))
    for rows in _chunks(n):
        lengths = np.minimum(rng.geometric(1 / 15, rows), SESSION_MAX_LEN)
        tokens = (items * rng.random(int(lengths.sum())) ** 2).astype(np.int64) + 1
        _write_lines(path, _joined_lines(tokens, lengths))
    return str(path)


TABLE_USERS, TABLE_ITEMS = 100_000, 50_000


def gen_table(folder: Path, n: int, rng) -> str:
    """n CSV rows with a header: user_id,item_id,cate_id,price,hist_items,click,conversion,ts."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    path = folder / "clicks.csv"
    names = ["user_id", "item_id", "cate_id", "price", "hist_items", "click", "conversion", "ts"]
    schema = pa.schema([(c, pa.string()) for c in names[:3]] + [("price", pa.float64()), ("hist_items", pa.string()),
                                                                 ("click", pa.int64()), ("conversion", pa.int64()),
                                                                 ("ts", pa.int64())])
    with open(path, "wb") as fh:
        fh.write((",".join(names) + "\n").encode())
        writer = _csv_writer(fh, schema)
        row = 0
        for rows in _chunks(n):
            items = (TABLE_ITEMS * rng.random(rows) ** 2).astype(np.int64)
            lengths = rng.integers(0, 11, rows)
            hist = (TABLE_ITEMS * rng.random(int(lengths.sum())) ** 2).astype(np.int64)
            click = rng.random(rows) < 0.2
            cols = [pc.binary_join_element_wise("u", pc.cast(pa.array(rng.integers(0, TABLE_USERS, rows)), pa.string()), ""),
                    pc.binary_join_element_wise("i", pc.cast(pa.array(items), pa.string()), ""),
                    pc.binary_join_element_wise("c", pc.cast(pa.array(items % 100), pa.string()), ""),
                    pa.array(np.round(rng.random(rows) * 100, 2), mask=rng.random(rows) < 0.1),
                    pc.cast(_joined_lines(hist, lengths, "^"), pa.string()),
                    pa.array(click.astype(np.int64)), pa.array((click & (rng.random(rows) < 0.1)).astype(np.int64)),
                    pa.array(1_600_000_000 + np.arange(row, row + rows))]
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))
            row += rows
        writer.close()
    return str(path)


INTERACTION_ITEMS, EVENTS_PER_SESSION = 50_000, 10


def gen_interactions(folder: Path, n: int, rng) -> str:
    """n YooChoose-like lines session,timestamp,item,category (no header), sessions in order."""
    import datetime as dt

    import numpy as np

    path = folder / "clicks.dat"
    start = dt.datetime(2014, 4, 1)
    with open(path, "w") as fh:
        first_session = 0
        for rows in _chunks(n):
            sessions = first_session + np.sort(rng.integers(0, max(1, rows // EVENTS_PER_SESSION), rows))
            seconds = np.sort(rng.integers(0, 3_000_000, rows))
            items = 214_000_000 + (INTERACTION_ITEMS * rng.random(rows) ** 2).astype(np.int64)
            stamps = [(start + dt.timedelta(seconds=int(s))).isoformat(timespec="milliseconds") + "Z" for s in seconds]
            fh.write("".join(f"{s},{t},{i},0\n" for s, t, i in zip(sessions.tolist(), stamps, items.tolist())))
            first_session = int(sessions[-1]) + 1
    return str(path)


GENERATORS = {"criteo": gen_criteo, "aliccp": gen_aliccp, "aliccp_raw": gen_aliccp_raw, "recbole": gen_recbole,
              "conure_recbole": gen_recbole, "conure_ttl": gen_ttl, "sessions": gen_sessions, "table": gen_table,
              "interactions": gen_interactions}
INPUT_ROWS_ARE = {
    "criteo": "TSV lines", "aliccp": "CSV data rows", "aliccp_raw": "skeleton lines",
    "recbole": ".inter interactions", "conure_recbole": ".inter interactions", "conure_ttl": "TTL lines",
    "sessions": "session lines", "table": "CSV data rows", "interactions": "log lines",
}


# --- one import -----------------------------------------------------------------------------------


def parquet_rows(out: Path) -> dict[str, int]:
    """Rows written, by the output folder relative to ``out`` (a top-level file by its name)."""
    import pyarrow.parquet as pq

    rows: dict[str, int] = {}
    for f in sorted(out.rglob("*.parquet")):
        key = f.relative_to(out).parent.as_posix()
        key = f.name if key == "." else key
        rows[key] = rows.get(key, 0) + pq.ParquetFile(f).metadata.num_rows
    return rows


def run_import(importer: str, src: str, out: Path, report: Path) -> dict:
    """One import in a fresh child process: its wall/CPU seconds and peak RSS (see CHILD)."""
    opts = IMPORT_OPTIONS[importer] + (QUIET if importer in TAKES_PROGRESS else [])
    cmd = [sys.executable, "-c", CHILD, str(report), "data", "import", importer, src, str(out), *opts]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    process_wall = time.perf_counter() - start
    if proc.returncode != 0 or not report.is_file():
        raise RuntimeError(f"{importer} import failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-4000:]}")
    child = json.loads(report.read_text())
    return {"wall_s": child["wall_s"], "cpu_s": child["cpu_s"], "process_wall_s": process_wall,
            "peak_rss_mib": child["peak_rss_kib"] / 1024, "baseline_rss_mib": child["baseline_rss_kib"] / 1024,
            "rss_source": child["source"], "ru_maxrss_mib": child["ru_maxrss_kib"] / 1024,
            "grandchildren_peak_rss_mib": child["grandchildren_peak_rss_kib"] / 1024}


def _size_bytes(src: str) -> int:
    p = Path(src)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def measure(importer: str, sizes: dict[str, int], rounds: int, work: Path, keep: bool, seed: int) -> dict:
    """Generate both sizes, import each ``rounds`` times (sizes interleaved); best wall, highest peak."""
    import numpy as np

    runs, srcs = {}, {}
    for i, (label, rows) in enumerate(sizes.items()):
        folder = work / importer / label / "input"
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        srcs[label] = GENERATORS[importer](folder, rows, np.random.default_rng(seed + i))
        runs[label] = {"rows": rows, "src": os.path.relpath(srcs[label], work),
                       "input_mib": round(_size_bytes(srcs[label]) / 2**20, 2),
                       "generate_s": round(time.perf_counter() - start, 2), "rounds": []}
    for r in range(rounds):
        for label in (list(sizes) if r % 2 == 0 else list(reversed(sizes))):
            out = work / importer / label / "out"
            shutil.rmtree(out, ignore_errors=True)
            m = run_import(importer, srcs[label], out, work / importer / label / f"child-{r}.json")
            m["rows_out"] = parquet_rows(out)
            runs[label]["rounds"].append(m)
            if not keep and r < rounds - 1:
                shutil.rmtree(out)
    for label, run in runs.items():
        best = min(run["rounds"], key=lambda m: m["wall_s"])
        outs = {json.dumps(m["rows_out"], sort_keys=True) for m in run["rounds"]}
        assert len(outs) == 1, f"{importer} {label}: rounds wrote different rows: {outs}"
        run.update({
            "out": os.path.relpath(work / importer / label / "out", work),
            "wall_s": round(best["wall_s"], 3), "cpu_s": round(best["cpu_s"], 3),
            "process_wall_s": round(best["process_wall_s"], 3),
            "rows_per_s": round(run["rows"] / best["wall_s"]),
            "input_mib_per_s": round(run["input_mib"] / best["wall_s"], 2),
            "peak_rss_mib": round(max(m["peak_rss_mib"] for m in run["rounds"]), 1),
            "baseline_rss_mib": round(min(m["baseline_rss_mib"] for m in run["rounds"]), 1),
            "rows_out": run["rounds"][0]["rows_out"],
            "rss_source": run["rounds"][0]["rss_source"],
            "ru_maxrss_mib": round(max(m["ru_maxrss_mib"] for m in run["rounds"]), 1),
            "walls_s": [round(m["wall_s"], 3) for m in run["rounds"]],
        })
        run["above_baseline_mib"] = round(run["peak_rss_mib"] - run["baseline_rss_mib"], 1)
        del run["rounds"]
    if not keep:
        shutil.rmtree(work / importer)
    small, large = (runs[label] for label in sizes)
    ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
    verdict = "flat" if ratio < FLAT_BELOW else "grows"
    expected, why = EXPECTED[importer]
    above = (large["above_baseline_mib"] / small["above_baseline_mib"]) if small["above_baseline_mib"] > 0 else None
    return {
        "input_rows_are": INPUT_ROWS_ARE[importer],
        "options": IMPORT_OPTIONS[importer],
        "sizes": runs,
        "rss_ratio": round(ratio, 3),
        "above_baseline_ratio": None if above is None else round(above, 3),
        "marginal_rss_bytes_per_row": round((large["peak_rss_mib"] - small["peak_rss_mib"]) * 2**20
                                            / (large["rows"] - small["rows"]), 1),
        "verdict": verdict,
        "expected": expected,
        "expected_why": why,
        "as_expected": verdict == expected,
    }


# --- driver ---------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--importers", nargs="+", choices=IMPORTER_NAMES, default=None)
    parser.add_argument("--scale", type=int, default=None, help="the large input is SCALE x N rows (default 4)")
    parser.add_argument("--rows-factor", type=float, default=None, help="multiply every N (default 1.0)")
    parser.add_argument("--work-dir", default=None,
                        help="keep inputs and outputs here (default: a temporary folder, removed)")
    parser.add_argument("--seed", type=int, default=0)
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.device != "cpu":
        parser.error("the importers run on CPU only (--device cpu)")
    s = settings(args, TINY, DEFAULTS)
    if s["scale"] < 2 or s["rounds"] < 1:
        parser.error("--scale must be >= 2 and --rounds >= 1")
    base = TINY_ROWS if args.tiny else BASE_ROWS
    machine = machine_info(args.device)  # the load average before the imports
    header_source = aliccp_header()[1]

    results = {}
    keep = args.work_dir is not None
    with tempfile.TemporaryDirectory(prefix="distrec-bench-import-") as tmp:
        work = Path(args.work_dir) if keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for importer in s["importers"]:
            n = max(1, round(base[importer] * s["rows_factor"]))
            sizes = {"N": n, f"{s['scale']}N": s["scale"] * n}
            print(f"{importer}: {n:,} and {s['scale'] * n:,} rows ...", flush=True)
            results[importer] = measure(importer, sizes, s["rounds"], work, keep, args.seed)

    rows = []
    for name, r in results.items():
        small, large = r["sizes"].values()
        rows.append([name, small["rows"], small["rows_per_s"], small["peak_rss_mib"], large["rows"],
                     large["rows_per_s"], large["peak_rss_mib"], r["rss_ratio"], r["marginal_rss_bytes_per_row"],
                     r["verdict"], r["expected"]])
    large_label = f"{s['scale']}N"
    print_table(["importer", "rows N", "rows/s N", "peak MiB N", f"rows {large_label}", f"rows/s {large_label}",
                 f"peak MiB {large_label}", "RSS ratio", "B/row", "verdict", "expected"], rows,
                title=f"importers, N vs {large_label} input rows (wall of the import call; peak RSS of the child)")
    unexpected = [n for n, r in results.items() if not r["as_expected"]]
    report = {
        "benchmark": NAME,
        "what": "rows/s and peak RSS of each distrec importer (distrec data import) on synthetic input in its "
                f"public format at N and {s['scale']}N rows; flat = peak RSS grows < {FLAT_BELOW}x",
        "settings": {**s, "tiny": args.tiny, "device": args.device, "seed": args.seed,
                     "rows_n": {k: max(1, round(base[k] * s["rows_factor"])) for k in s["importers"]},
                     "flat_below_ratio": FLAT_BELOW, "aliccp_header": header_source,
                     "work_dir": str(Path(args.work_dir).resolve()) if keep else "<temporary folder, removed>",
                     "measurement": "each import in a fresh child: python -c <wrapper> data import FORMAT SRC OUT "
                                    "through distrec.cli.main; peak RSS = the child's VmHWM (/proc/self/status) "
                                    "after the import, baseline = VmHWM before it (interpreter + importer "
                                    "modules); not ru_maxrss, which Linux carries over from the parent at "
                                    "fork/exec (recorded as ru_maxrss_mib for reference); rows/s = input rows / "
                                    "wall of the import call (perf_counter in the child, start-up excluded; "
                                    "process_wall_s includes it); best wall and highest peak over --rounds",
                     "fixed_id_spaces": {"criteo_tokens_per_column": "10 / 1,000 / 100,000 (cycling)",
                                         "aliccp_cardinality": ALICCP_CARDINALITY,
                                         "aliccp_raw_common_records": f"1 per {RAW_COMMON_EVERY} skeleton lines",
                                         "recbole_items": RECBOLE_ITEMS,
                                         "recbole_users": f"1 per {RECBOLE_INTERACTIONS_PER_USER} interactions",
                                         "ttl_items": TTL_ITEMS, "session_items": SESSION_ITEMS,
                                         "table_users_items": [TABLE_USERS, TABLE_ITEMS],
                                         "interaction_items": INTERACTION_ITEMS,
                                         "interaction_sessions": f"1 per {EVENTS_PER_SESSION} events"}},
        "results": results,
        "expected_to_grow_by_design": {n: why for n, (e, why) in EXPECTED.items() if e == "grows"},
        "summary": {n: {"rows_per_s_N": r["sizes"]["N"]["rows_per_s"],
                        f"rows_per_s_{large_label}": r["sizes"][large_label]["rows_per_s"],
                        "peak_rss_mib_N": r["sizes"]["N"]["peak_rss_mib"],
                        f"peak_rss_mib_{large_label}": r["sizes"][large_label]["peak_rss_mib"],
                        "rss_ratio": r["rss_ratio"], "verdict": r["verdict"], "expected": r["expected"]}
                    for n, r in results.items()},
        "unexpected": unexpected,
        "note": "CPU-only wall-clock rates on a shared machine (load average in machine): indicative, compare "
                "within a run. Peak RSS includes the ~100+ MiB baseline of the interpreter and importer modules "
                "(baseline_rss_mib; above_baseline_mib is the import's own share). In --tiny mode every import "
                "stays near the baseline: the verdicts mean nothing there.",
        "machine": machine,
    }
    if unexpected and not args.tiny:
        print(f"NOT as expected: {', '.join(unexpected)}")
    write_report(NAME, report, args.out_dir, args.device)
    return report


if __name__ == "__main__":
    main()
