"""full.workspace: views of one flat buffer per name, reused while they fit, replaced when they do not; per thread;
a copy starts empty."""

from __future__ import annotations

import copy
import pickle
import threading

import torch

from full.workspace import Workspace

CPU = torch.device("cpu")


def test_a_fitting_request_reuses_the_memory_a_larger_one_replaces_it():
    ws = Workspace()
    a = ws.tensor("ffn", (2, 3, 4), torch.float32, CPU)
    assert a.shape == (2, 3, 4) and a.is_contiguous() and ws.nbytes() == 24 * 4
    b = ws.tensor("ffn", (3, 4), torch.float32, CPU)  # smaller: a view of the same memory
    assert b.data_ptr() == a.data_ptr() and ws.nbytes() == 24 * 4
    c = ws.tensor("ffn", (5, 6), torch.float32, CPU)  # larger: a new buffer
    assert c.shape == (5, 6) and ws.nbytes() == 30 * 4
    assert ws.tensor("ffn", (2, 3, 4), torch.float32, CPU).data_ptr() == c.data_ptr()
    d = ws.tensor("ffn", (2, 3), torch.float64, CPU)  # another dtype: replaced
    assert d.dtype == torch.float64 and ws.nbytes() == 6 * 8
    ws.tensor("other", (7,), torch.float32, CPU)
    assert ws.nbytes() == 6 * 8 + 7 * 4
    ws.clear()
    assert ws.nbytes() == 0


def test_names_do_not_share_memory():
    ws = Workspace()
    a, b = ws.tensor("a", (8,), torch.float32, CPU), ws.tensor("b", (8,), torch.float32, CPU)
    a.fill_(1.0)
    b.fill_(2.0)
    assert torch.equal(a, torch.ones(8))


def test_threads_and_copies_get_their_own_buffers():
    ws = Workspace()
    mine = ws.tensor("x", (4,), torch.float32, CPU)
    theirs = []
    worker = threading.Thread(target=lambda: theirs.append(ws.tensor("x", (4,), torch.float32, CPU).data_ptr()))
    worker.start()
    worker.join()
    assert theirs[0] != mine.data_ptr()
    for other in (copy.deepcopy(ws), pickle.loads(pickle.dumps(ws))):
        assert isinstance(other, Workspace) and other.nbytes() == 0
    assert ws.nbytes() == 16
