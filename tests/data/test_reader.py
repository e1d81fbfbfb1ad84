"""The per-rank Parquet reader: exactly-once reads across ranks and loader workers, resume, padding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from distrec.config.schema import SynthConfig
from distrec.data.reader import (
    ParquetStreamReader,
    assign_units,
    make_loader,
    pad_to_steps,
    plan_units,
    steps_per_epoch,
)
from distrec.data.synth import write_synthetic
from distrec.storage import list_parquet_files

# 3 files of 2500/2500/2300 rows in row groups of 700 (last ones 400, 400, 200): unequal sizes
SMALL = SynthConfig(rows=7300, rows_per_file=2500, rows_per_row_group=700, num_sparse=3, num_dense=2,
                    num_embeddings=100, num_users=50, seed=3)
BATCH = 256


def _with_row_ids(schema):
    """The synth schema, reading the row_id column as group ids so tests can track rows."""
    return dataclasses.replace(schema, group_key="row_id")


@pytest.fixture(scope="module")
def local_data(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth"))
    schema = write_synthetic(out, SMALL, progress=False)
    files = list_parquet_files(out)
    return _with_row_ids(schema), files, plan_units(files)


def _row_ids(batches) -> np.ndarray:
    return np.concatenate([b.group_ids.numpy() for b in batches]) if batches else np.zeros(0, np.int64)


def _read(schema, units, **kw):
    reader = ParquetStreamReader(schema, units, BATCH, **kw)
    batches = list(make_loader(reader))
    return reader, batches


def _check_exactly_once(schema, units, world_size, shuffle, workers, **extra):
    seen = []
    for rank in range(world_size):
        reader, batches = _read(schema, units, rank=rank, world_size=world_size, epoch=1, seed=7,
                                shuffle=shuffle, num_loader_workers=workers, **extra)
        assert len(batches) == reader.num_batches()
        ids = _row_ids(batches)
        assert len(ids) == reader.num_rows()
        short = [b.batch_size for b in batches if b.batch_size != BATCH]
        assert len(short) <= max(1, workers)  # only each worker's final batch may be partial
        seen.append(ids)
    all_ids = np.concatenate(seen)
    assert len(all_ids) == SMALL.rows
    np.testing.assert_array_equal(np.sort(all_ids), np.arange(SMALL.rows))


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_every_row_read_exactly_once(local_data, world_size, shuffle, workers):
    schema, _, units = local_data
    _check_exactly_once(schema, units, world_size, shuffle, workers)


def test_units_balanced_and_shuffle_depends_on_epoch(local_data):
    _, _, units = local_data
    biggest = max(u.num_rows for u in units)
    for world_size in (2, 3):
        rows = [sum(u.num_rows for u in assign_units(units, r, world_size, 0, 1, True)) for r in range(world_size)]
        assert max(rows) - min(rows) <= biggest
        assert sum(rows) == SMALL.rows
    e0 = assign_units(units, 0, 1, epoch=0, seed=1, shuffle=True)
    e1 = assign_units(units, 0, 1, epoch=1, seed=1, shuffle=True)
    assert e0 != e1 and sorted(e0, key=str) == sorted(e1, key=str)
    assert e0 == assign_units(units, 0, 1, epoch=0, seed=1, shuffle=True)


def test_plan_units_reads_footers(local_data):
    _, files, units = local_data
    assert len(files) == 3
    assert [u.num_rows for u in units if u.file == files[2]] == [700, 700, 700, 200]
    assert sum(u.num_rows for u in units) == SMALL.rows


@pytest.mark.parametrize("workers", [0, 2])
def test_steps_per_epoch_and_padding(local_data, workers):
    schema, _, units = local_data
    world_size = 3
    steps = steps_per_epoch(units, BATCH, world_size, epoch=2, seed=5, shuffle=True, num_loader_workers=workers)
    counts = []
    for rank in range(world_size):
        reader = ParquetStreamReader(schema, units, BATCH, rank=rank, world_size=world_size, epoch=2, seed=5,
                                     shuffle=True, num_loader_workers=workers)
        counts.append(reader.num_batches())
        padded = list(pad_to_steps(make_loader(reader), steps, schema))
        assert len(padded) == steps
        pads = padded[reader.num_batches():]
        assert all(p.batch_size == 1 and float(p.weights.sum()) == 0 for p in pads)
        assert all(float(b.weights.min()) == 1 for b in padded[: reader.num_batches()])
        if pads:
            p = pads[0]
            assert p.sparse.keys() == schema.sparse_names
            assert p.sparse.values().tolist() == [0] * len(schema.sparse_names)
            assert p.dense.shape == (1, len(schema.dense)) and p.labels.shape == (1, 1)
    assert steps == max(counts)
    assert min(counts) < steps  # the test exercises padding on at least one rank


def test_pad_to_steps_refuses_extra_batches(local_data):
    schema, _, units = local_data
    reader = ParquetStreamReader(schema, units, BATCH)
    with pytest.raises(ValueError, match="more than"):
        list(pad_to_steps(reader, reader.num_batches() - 1, schema))


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_yields_the_tail(local_data, workers):
    schema, _, units = local_data
    kw = dict(rank=1, world_size=2, epoch=3, seed=11, shuffle=True, num_loader_workers=workers)
    _, full = _read(schema, units, **kw)
    full_ids = [b.group_ids.numpy() for b in full]
    n = len(full)
    for k in sorted({1, 2, 5, n // 2, n - 2, n - 1, n, n + 3}):
        reader, tail = _read(schema, units, start_batch=k, **kw)
        assert reader.num_batches() == max(0, n - k)
        assert len(tail) == max(0, n - k), k
        for got, want in zip(tail, full_ids[k:]):
            np.testing.assert_array_equal(got.group_ids.numpy(), want)
        assert reader.num_rows() == sum(len(x) for x in full_ids[k:])


def test_resume_matches_direct_iteration(local_data):
    """Iterating the reader itself (no DataLoader) gives DataLoader's order, also when resumed."""
    schema, _, units = local_data
    kw = dict(shuffle=True, seed=2, num_loader_workers=3)
    _, via_loader = _read(schema, units, start_batch=4, **kw)
    direct = list(ParquetStreamReader(schema, units, BATCH, start_batch=4, **kw))
    assert len(direct) == len(via_loader)
    for a, b in zip(direct, via_loader):
        assert torch.equal(a.group_ids, b.group_ids)
        assert torch.equal(a.sparse.values(), b.sparse.values())


def test_batches_match_the_files(local_data):
    """Batch contents line up row by row with what pyarrow reads directly."""
    import pyarrow.parquet as pq

    schema, files, units = local_data
    table = pq.ParquetDataset(files).read(columns=["row_id", "c0", "c1", "d1", "click"])
    by_id = {rid: i for i, rid in enumerate(table["row_id"].to_pylist())}
    batch = next(iter(ParquetStreamReader(schema, units, BATCH, shuffle=True, seed=4)))
    rows = [by_id[r] for r in batch.group_ids.tolist()]
    jt = batch.sparse.to_dict()
    c0 = table["c0"].to_pylist()
    assert [x.tolist() for x in jt["c0"].to_dense()] == [c0[i] for i in rows]
    assert jt["c1"].values().tolist() == [table["c1"][i].as_py() for i in rows]
    np.testing.assert_allclose(batch.dense[:, 1].numpy(), [table["d1"][i].as_py() for i in rows])
    assert batch.labels[:, 0].tolist() == [float(table["click"][i].as_py()) for i in rows]


# --- S3 (moto on 127.0.0.1) --------------------------------------------------------------------


@pytest.fixture
def s3_data(s3_server, s3_bucket):
    out = f"{s3_bucket}/train"
    schema = write_synthetic(out, SMALL, s3_endpoint_url=s3_server, progress=False)
    files = list_parquet_files(out, s3_server)
    assert files[0].startswith("s3://") and len(files) == 3
    return _with_row_ids(schema), plan_units(files, s3_server, schema), s3_server


def test_s3_every_row_read_exactly_once(s3_data):
    schema, units, endpoint = s3_data
    for world_size in (1, 2, 3):
        _check_exactly_once(schema, units, world_size, shuffle=True, workers=0, s3_endpoint_url=endpoint)
    _check_exactly_once(schema, units, 2, shuffle=False, workers=2, s3_endpoint_url=endpoint)
