"""Shared test settings for the whole suite (it must stay well under 10 minutes on 2 cores).

* a fast hypothesis profile;
* one intra-op thread per test: every tensor here is small, so OpenMP threads only add synchronisation, and
  on a shared machine their barriers made tiny ops up to 50× slower. ``OMP_NUM_THREADS=1`` (unless set) carries
  the same to the processes tests start (CLI, benchmark scripts, worker pools): a tiny DiT block under load took
  1.3 s with two threads and 0.02 s with one.
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

os.environ.setdefault("OMP_NUM_THREADS", "1")

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


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nothing can be written in, even by root: mode 0555, and where that is not enough (root ignores
    modes) the immutable attribute (``chattr +i``); skipped where neither works."""
    import os
    import shutil
    import subprocess
    import tempfile

    folder = tmp_path / "read-only"
    folder.mkdir()
    os.chmod(folder, 0o555)
    immutable = False

    def writable() -> bool:
        try:
            with tempfile.TemporaryFile(dir=folder):
                return True
        except OSError:
            return False

    if writable() and shutil.which("chattr"):
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    if writable():
        pytest.skip("cannot make a read-only folder here (root without chattr)")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=False)
    os.chmod(folder, 0o755)
