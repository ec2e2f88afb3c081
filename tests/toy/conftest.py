"""Toy-track test settings: one torch thread.

The toy tensors are small; OpenMP threads only add synchronisation, and on a shared 2-core machine they stall
(tests/toy/test_students.py: 3.5 s with one thread, 40 s with two). Restored after each test.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
