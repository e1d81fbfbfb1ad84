"""A NaN loss on one rank: a clear error on every rank, or (nan_policy=skip) the step skipped
everywhere — no update of the dense weights, training carries on."""

import pytest
from engine_workers import train_with_poisoned_batch
from omegaconf import OmegaConf
from test_sharded_training import GLOBAL_BATCH, all_tables, tiny_ctr_config

from distrec.train.local_spawn import spawn


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_non_finite_loss(tmp_path, policy):
    cfg = tiny_ctr_config(tmp_path, *all_tables("row_wise"), f"trainer.nan_policy={policy}",
                          f"data.batch_size={GLOBAL_BATCH // 2}")
    results = spawn(train_with_poisoned_batch, 2, OmegaConf.to_container(cfg, resolve=True), GLOBAL_BATCH, 1)
    if policy == "error":
        for result in results:  # rank 1's own loss was finite: it stops too, nobody hangs
            assert result["steps"] == 1
            assert "non-finite" in result["error"] and "step 2" in result["error"]
            assert "nan_policy=skip" in result["error"]
    else:
        for result in results:
            assert result["error"] is None and result["skipped"] == 1
            # step 2 (poisoned) left the weights as step 1 left them; step 3 trained again
            assert result["unchanged_after"] == [True, False]
