"""The embedded Ray that the sweep tests share (each start costs ~10 s)."""

import os
from pathlib import Path

import pytest
import ray

from cycleseg.model.plugins import ENV as PLUGINS_ENV
from cycleseg.sweep.execution.cluster import start_ray

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("CYCLESEG_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def cluster(cache):
    """One embedded Ray (2 CPUs, 1 logical GPU for fractional scheduling) with the test-only methods
    (tests/faults.py, tests/known_answer.py) registered in the driver and, through the plugin variable, in
    every worker. Tests leave it as they found it: no placement group or actor of theirs outlives them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(PLUGINS_ENV, "tests.faults,tests.known_answer")
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        start_ray(num_cpus=2, num_gpus=1)
        yield
        ray.shutdown()
