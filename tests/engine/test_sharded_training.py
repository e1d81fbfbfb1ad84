"""2-worker sharded training equals 1-worker unsharded training on the same global batches."""

import pytest
import torch
from engine_workers import full_state, train_on_global_batches
from omegaconf import OmegaConf

from distrec.methods import load_config, prepare_data
from distrec.train.local_spawn import spawn

GLOBAL_BATCH = 128


def tiny_ctr_config(tmp_path, *overrides):
    data = tmp_path / "data"
    cfg = load_config("configs/ctr/smoke.yaml", [
        f"run.output_dir={tmp_path / 'runs'}",
        f"data.train={data / 'train'}", f"data.valid={data / 'valid'}", "data.test=null",
        f"data.schema={data / 'train' / 'schema.yaml'}",
        "data.synth.rows=1024", "data.synth.valid_rows=256", "data.synth.rows_per_file=512",
        "data.synth.rows_per_row_group=256", "data.synth.num_embeddings=200",
        "sharding.tables={}", "trainer.log_every=1000", "metrics.tensorboard=false",
        *overrides,
    ])
    prepare_data(cfg)
    return cfg


def all_tables(sharding_type: str) -> list[str]:
    names = ["user_id"] + [f"c{i}" for i in range(6)]
    return [f"sharding.tables.{n}.sharding_types=[{sharding_type}]" for n in names]


@pytest.mark.parametrize("sharding_type", ["table_wise", "row_wise", "column_wise", "table_row_wise"])
def test_two_worker_sharded_matches_one_worker(tmp_path, sharding_type):
    base = tiny_ctr_config(tmp_path)
    one = OmegaConf.to_container(base, resolve=True)
    ref = spawn(train_on_global_batches, 1, one, str(tmp_path / "one"), GLOBAL_BATCH, True)[0]

    two_cfg = tiny_ctr_config(tmp_path, *all_tables(sharding_type), f"run.init_from={ref['initial']}",
                              f"data.batch_size={GLOBAL_BATCH // 2}")
    two = OmegaConf.to_container(two_cfg, resolve=True)
    sharded = spawn(train_on_global_batches, 2, two, str(tmp_path / "two"), GLOBAL_BATCH, False)[0]

    assert len(ref["losses"]) == len(sharded["losses"]) == 1024 // GLOBAL_BATCH
    assert ref["losses"][-1] < ref["losses"][0]  # it learned something: equality is not trivial
    torch.testing.assert_close(torch.tensor(sharded["losses"]), torch.tensor(ref["losses"]), rtol=1e-5, atol=1e-6)

    # final weights: both checkpoints loaded onto one worker must agree, table by table
    ref_state, sharded_state = spawn(full_state, 1, one, [ref["final"], sharded["final"]])[0]
    assert ref_state.keys() == sharded_state.keys()
    for key in ref_state:
        torch.testing.assert_close(sharded_state[key], ref_state[key], rtol=1e-5, atol=1e-6, msg=key)
