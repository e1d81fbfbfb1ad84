"""A run the cluster cannot place fails after trainer.startup_timeout_s, saying what it asked for and
what the cluster has, instead of waiting for its workers forever."""

import time

import pytest

from distrec.errors import ClusterError
from distrec.methods import load_config
from distrec.train.worker_resources import wait_for_worker_resources

SMOKE = "configs/ctr/smoke.yaml"


@pytest.mark.ray
def test_too_few_cpus_fail_after_the_startup_timeout(ray_cluster):
    cfg = load_config(SMOKE, ["trainer.cpus_per_worker=1000", "trainer.startup_timeout_s=2"])
    cpus = ray_cluster.cluster_resources()["CPU"]
    start = time.monotonic()
    with pytest.raises(ClusterError) as info:
        wait_for_worker_resources(cfg.trainer)
    assert 2 <= time.monotonic() - start < 30
    assert str(info.value).startswith(
        "the Ray cluster could not place 2 workers of 1000 CPU, 0 GPU each (trainer.num_workers, "
        "trainer.cpus_per_worker, trainer.use_gpu; placement PACK) within trainer.startup_timeout_s=2 s; "
        f"the cluster has {cpus:g} CPU, 0 GPU on 1 node(s), of which ")


@pytest.mark.ray
def test_strict_spread_over_one_node_fails_and_a_fitting_request_passes(ray_cluster):
    spread = load_config(SMOKE, ["trainer.placement_strategy=STRICT_SPREAD", "trainer.cpus_per_worker=0.5",
                                 "trainer.startup_timeout_s=1"])
    with pytest.raises(ClusterError, match="placement STRICT_SPREAD"):
        wait_for_worker_resources(spread.trainer)
    fits = load_config(SMOKE, ["trainer.cpus_per_worker=0.5", "trainer.startup_timeout_s=60"])
    wait_for_worker_resources(fits.trainer)  # placed, then released for Ray Train (asynchronously)
    deadline = time.monotonic() + 10
    while ray_cluster.available_resources().get("CPU") != ray_cluster.cluster_resources()["CPU"]:
        assert time.monotonic() < deadline, "the placement group was not released"
        time.sleep(0.1)
