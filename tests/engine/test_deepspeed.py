"""The dense part under a real DeepSpeed engine (ZeRO), next to TorchRec-sharded tables."""

import pytest
import torch
from engine_workers import train_steps
from omegaconf import OmegaConf
from test_sharded_training import GLOBAL_BATCH, all_tables, tiny_ctr_config

from distrec.train.local_spawn import spawn


@pytest.mark.parametrize("zero_stage", [1, 3])
def test_deepspeed_trains_and_resumes(tmp_path, zero_stage):
    cfg = tiny_ctr_config(tmp_path, *all_tables("row_wise"), "dense.backend=deepspeed",
                          f"dense.zero_stage={zero_stage}", "dense.lr=0.003",
                          f"data.batch_size={GLOBAL_BATCH // 2}")
    two = OmegaConf.to_container(cfg, resolve=True)
    straight = spawn(train_steps, 2, two, str(tmp_path / "straight"), GLOBAL_BATCH, 8)[0]
    losses = straight["losses"]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # it learns

    first = spawn(train_steps, 2, two, str(tmp_path / "resumed"), GLOBAL_BATCH, 4)[0]
    resumed = {**two, "run": {**two["run"], "resume": True}}
    second = spawn(train_steps, 2, resumed, str(tmp_path / "resumed"), GLOBAL_BATCH, 4)[0]
    assert second["start"] == 4
    # DeepSpeed's optimizer state and the fused embedding state came back: same trajectory
    torch.testing.assert_close(torch.tensor(first["losses"] + second["losses"]), torch.tensor(losses),
                               rtol=1e-5, atol=1e-6)
