"""data.on_bad_rows reaches the reader of every split a worker opens."""

import pytest
import torch

from distrec.config.schema import OnBadRows
from distrec.data.synth import write_synthetic
from distrec.errors import ConfigError
from distrec.methods import load_config
from distrec.train.distributed import WorkerInfo


def _cfg(tmp_path, *overrides):
    data = tmp_path / "data"
    return load_config("configs/ctr/smoke.yaml", [f"data.train={data}", f"data.schema={data / 'schema.yaml'}",
                                                  *overrides])


def test_on_bad_rows_is_a_closed_choice(tmp_path):
    assert _cfg(tmp_path).data.on_bad_rows == OnBadRows.error
    assert _cfg(tmp_path, "data.on_bad_rows=skip").data.on_bad_rows == OnBadRows.skip
    with pytest.raises(ConfigError, match="on_bad_rows"):
        _cfg(tmp_path, "data.on_bad_rows=ignore")


def test_workers_open_their_feeds_with_on_bad_rows(tmp_path):
    from distrec.train.loop import open_feed

    cfg = _cfg(tmp_path, "data.on_bad_rows=skip", "data.synth.rows=2000")
    schema = write_synthetic(cfg.data.train, cfg.data.synth, progress=False)
    worker = WorkerInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), local_world_size=1)
    for train in (True, False):
        assert open_feed(cfg, schema, worker, cfg.data.train, train=train).on_bad_rows == OnBadRows.skip
