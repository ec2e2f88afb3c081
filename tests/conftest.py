"""Shared test settings for the whole suite (it must stay well under 10 minutes on 2 cores).

* a fast hypothesis profile;
* one intra-op thread per test: every tensor here is small, so OpenMP threads only add synchronisation, and
  on a shared machine their barriers made tiny ops up to 50× slower.
"""

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "cf-ref", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("cf-ref")


@pytest.fixture(scope="session", autouse=True)
def single_thread_session():
    """One intra-op thread from the start of the session, so module-scoped fixtures (which run before any
    function-scoped one) are single-threaded too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def single_thread(single_thread_session):
    """Back to one thread after each test (a CLI test may have asked for more with ``--threads``)."""
    yield
    torch.set_num_threads(1)
