"""One local Ray cluster (127.0.0.1) shared by every test that needs Ray."""

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    from distrec.train.launcher import ensure_ray

    ensure_ray(address=None, num_cpus_needed=4, gpu=False)
    yield ray
    ray.shutdown()
