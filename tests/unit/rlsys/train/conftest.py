"""A real local Ray cluster that declares 8 GPUs it does not have: nothing here launches an
actor on them; the tests only plan, build settings, and pass objects through Ray's store."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def fake_gpu_ray():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    # address="local": a new cluster even when a `ray start` one runs on this machine
    ray.init(address="local", num_cpus=2, num_gpus=8, include_dashboard=False,
             log_to_driver=False)
    yield ray
    ray.shutdown()
