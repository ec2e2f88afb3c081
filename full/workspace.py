r"""Scratch tensors a model's no-grad passes reuse instead of asking the allocator for fresh ones every pass.

On CPU, glibc serves a large tensor (above its ``mmap`` threshold, at most 32 MiB; e.g. the FFN's hidden
``[B, L, 8960]`` float32, 56 MB for one 480×832 latent frame) with fresh pages from the kernel and returns them on
free, so every pass pays the page faults of the first touch again (counted in whichever op writes it first, e.g.
the ``copy_`` of a linear layer's bias in ``addmm``). A :class:`Workspace` keeps one flat buffer per name and hands
out a view of the shape asked for,

.. math::  \mathrm{tensor}(n, s) = \mathrm{flat}_n[0 : \textstyle\prod s].\mathrm{view}(s),

growing ``flat_n`` (replacing it) only when a larger or differently typed tensor is asked for: after the first pass
the same memory is written every pass. The holder must be done with a view before it asks for the same name again
(a block's FFN hidden is dead when the block returns; the blocks of a model run one after another). What it costs:
up to the largest tensor asked for under each name stays allocated while the model lives (what PyTorch's CUDA
caching allocator keeps on a GPU anyway). Buffers are per thread (two threads running one model do not share them);
a copy of the holder (``copy.deepcopy`` of a model, pickling) starts empty.
"""

from __future__ import annotations

import math
import threading

import torch
from torch import Tensor


class Workspace:
    """Reusable scratch tensors by name (module doc); per thread, empty in a copy."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _buffers(self) -> dict[str, Tensor]:
        if not hasattr(self._local, "buffers"):
            self._local.buffers = {}
        return self._local.buffers

    def tensor(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        """A tensor of ``shape`` (uninitialised; the same memory as the last one of ``name`` when it fits)."""
        n = math.prod(shape)
        buffers = self._buffers()
        flat = buffers.get(name)
        if flat is None or flat.numel() < n or flat.dtype != dtype or flat.device != torch.device(device):
            flat = buffers[name] = torch.empty(n, dtype=dtype, device=device)
        return flat[:n].view(shape)

    def nbytes(self) -> int:
        """Bytes this thread's buffers hold."""
        return sum(t.numel() * t.element_size() for t in self._buffers().values())

    def clear(self) -> None:
        """Free this thread's buffers."""
        self._buffers().clear()

    def __deepcopy__(self, memo: dict) -> Workspace:
        return Workspace()

    def __reduce__(self):
        return (Workspace, ())
