"""One local Ray cluster (127.0.0.1) shared by every test that needs Ray."""

import threading

import pytest

SHUTDOWN_TIMEOUT_S = 30


@pytest.fixture(scope="session")
def ray_cluster(s3_server):
    """Started after the S3 server so its workers inherit the endpoint and (fake) credentials
    through the process environment, as workers on a real cluster inherit theirs."""
    import os

    import ray

    from distrec.train.launcher import ensure_ray

    os.environ["AWS_ENDPOINT_URL"] = s3_server
    ensure_ray(address=None, num_cpus_needed=4, gpu=False)
    yield ray
    stop_ray(ray)


def stop_ray(ray) -> None:
    """ray.shutdown(), bounded: it can block joining its log threads (seen after spawned gloo
    workers ran beside it); then the cluster's processes are killed, which releases them."""
    worker = threading.Thread(target=ray.shutdown, daemon=True)
    worker.start()
    worker.join(SHUTDOWN_TIMEOUT_S)
    if worker.is_alive():
        node = ray._private.worker._global_node
        if node is not None:
            node.kill_all_processes(check_alive=False, allow_graceful=False)
        worker.join(SHUTDOWN_TIMEOUT_S)
