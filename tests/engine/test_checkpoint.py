"""DCP checkpoints: resume exactly, reshard onto another world size, never look complete when not."""

import os

import pytest
import torch
from engine_workers import failing_checkpoint, load_with_optimizer, predict, train_steps
from omegaconf import OmegaConf
from test_sharded_training import GLOBAL_BATCH, all_tables, tiny_ctr_config

from distrec.errors import CheckpointError
from distrec.train.checkpoint import latest_checkpoint, read_meta
from distrec.train.local_spawn import spawn


def test_resume_with_two_and_reload_weights_with_one(tmp_path):
    cfg = tiny_ctr_config(tmp_path, *all_tables("row_wise"), f"data.batch_size={GLOBAL_BATCH // 2}")
    two = OmegaConf.to_container(cfg, resolve=True)
    straight = spawn(train_steps, 2, two, str(tmp_path / "straight"), GLOBAL_BATCH, 6)[0]

    first = spawn(train_steps, 2, two, str(tmp_path / "resumed"), GLOBAL_BATCH, 3)[0]
    resumed_cfg = {**two, "run": {**two["run"], "resume": True}}
    second = spawn(train_steps, 2, resumed_cfg, str(tmp_path / "resumed"), GLOBAL_BATCH, 3)[0]
    assert second["start"] == 3  # continued from the step in the checkpoint, not from scratch
    # weights, fused row-wise Adagrad state and Adam state all restored: the same trajectory
    torch.testing.assert_close(torch.tensor(first["losses"] + second["losses"]),
                               torch.tensor(straight["losses"]), rtol=1e-5, atol=1e-6)

    # the 2-worker row-wise checkpoint reloads onto 1 worker (table-wise): same predictions
    one_cfg = tiny_ctr_config(tmp_path, f"data.batch_size={GLOBAL_BATCH}")
    one = OmegaConf.to_container(one_cfg, resolve=True)
    preds_two = spawn(predict, 2, two, second["checkpoint"], GLOBAL_BATCH)[0]
    preds_one = spawn(predict, 1, one, second["checkpoint"], GLOBAL_BATCH)[0]
    assert len(preds_one) == 1024
    torch.testing.assert_close(torch.tensor(preds_one), torch.tensor(preds_two), rtol=1e-5, atol=1e-6)
    # ... and the comparison can tell checkpoints apart: the 3-step one predicts differently
    preds_three_steps = spawn(predict, 1, one, first["checkpoint"], GLOBAL_BATCH)[0]
    assert not torch.allclose(torch.tensor(preds_three_steps), torch.tensor(preds_one))


def test_interrupted_checkpoint_is_never_latest(tmp_path):
    cfg = OmegaConf.to_container(tiny_ctr_config(tmp_path), resolve=True)
    run_dir = tmp_path / "run"
    result = spawn(failing_checkpoint, 1, cfg, str(run_dir))[0]
    assert result["error"] == "disk full (simulated)"
    assert result["latest"] == result["good"]
    assert read_meta(result["latest"])["step"] == 0
    finished = sorted(p for p in os.listdir(run_dir / "checkpoints") if p.startswith("step-"))
    assert finished == ["step-000000000"]  # the broken one only exists as a .tmp- directory


def test_checkpoint_without_meta_is_rejected(tmp_path):
    broken = tmp_path / "checkpoints" / "step-000000005"
    broken.mkdir(parents=True)
    (tmp_path / "checkpoints" / "latest").write_text("step-000000005")
    assert latest_checkpoint(str(tmp_path)) == str(broken)
    with pytest.raises(CheckpointError, match="step-000000005.*incomplete"):
        read_meta(str(broken))


def test_changed_column_split_loads_weights_only(tmp_path):
    """Row-wise state follows a 2 -> 1 worker reshard; a changed column split cannot (its
    optimizer state has per-shard shapes): then weights load alone, predictions unchanged."""
    tables = ["user_id"] + [f"c{i}" for i in range(6)]
    column_split = [f"sharding.tables.{t}.min_partition=8" for t in tables]
    two_cw = tiny_ctr_config(tmp_path, *all_tables("column_wise"), *column_split,
                             f"data.batch_size={GLOBAL_BATCH // 2}")
    two_rw = tiny_ctr_config(tmp_path, *all_tables("row_wise"), f"data.batch_size={GLOBAL_BATCH // 2}")
    one = OmegaConf.to_container(tiny_ctr_config(tmp_path, f"data.batch_size={GLOBAL_BATCH}"), resolve=True)
    cw = spawn(train_steps, 2, OmegaConf.to_container(two_cw, resolve=True), str(tmp_path / "cw"), GLOBAL_BATCH, 2)[0]
    rw = spawn(train_steps, 2, OmegaConf.to_container(two_rw, resolve=True), str(tmp_path / "rw"), GLOBAL_BATCH, 2)[0]

    assert spawn(load_with_optimizer, 1, one, rw["checkpoint"])[0] is True
    assert spawn(load_with_optimizer, 1, one, cw["checkpoint"])[0] is False
    preds_two = spawn(predict, 2, OmegaConf.to_container(two_cw, resolve=True), cw["checkpoint"], GLOBAL_BATCH)[0]
    preds_one = spawn(predict, 1, one, cw["checkpoint"], GLOBAL_BATCH)[0]
    torch.testing.assert_close(torch.tensor(preds_one), torch.tensor(preds_two), rtol=1e-5, atol=1e-6)
