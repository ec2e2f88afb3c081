"""FSDP2's collective buffers as fake tensors, so that a simulation of ``N > 1`` ranks holds no real memory.

FSDP2 allocates the all-gather output (one rank's shards of a group, ``N`` times: the unsharded weights) and the
reduce-scatter input and output (the unsharded gradients, their shard) with ``torch.empty`` through its comm
objects' ``allocate``. The plan runs a step *outside* the fake mode (:func:`full.plan.memory.fake_tensors`), so
those buffers would be real: the gathered weights then are real tensors, and every layer computes for real on
them (measured at a small size, 4 blocks, 8 simulated ranks: 110 MB of real storage created in one ar-diffusion
step against 0.8 MB on one rank). :func:`fake_collectives` gives every FSDP2 module of a simulation the comms of
:class:`FakeAllGather` / :class:`FakeReduceScatter`: the same collectives through the (fake) process group, their
buffers allocated in the fake mode of the module's own parameters. What the memory tracker sees is unchanged:
the buffers have the same shapes and dtypes, and fake storages are tracked like real ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.distributed.fsdp import FSDPModule
from torch.distributed.fsdp._fully_shard._fsdp_collectives import DefaultAllGather, DefaultReduceScatter


class _FakeAlloc:
    """``allocate`` (FSDP2's comm interface): ``torch.empty(size)`` in ``mode``."""

    def __init__(self, mode: FakeTensorMode):
        self.mode = mode

    def allocate(self, size, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        with self.mode:
            return torch.empty(*size, dtype=dtype, device=device)


class FakeAllGather(_FakeAlloc, DefaultAllGather):
    """FSDP2's default all-gather (``dist.all_gather_single``) with a fake output buffer ``[N · shard numel]``."""


class FakeReduceScatter(_FakeAlloc, DefaultReduceScatter):
    """FSDP2's default reduce-scatter (``dist.reduce_scatter_single``) with fake buffers (input ``[N · shard]``,
    output ``[shard]``)."""


def _in_mode(fn: Callable[..., None], mode: FakeTensorMode) -> Callable[..., None]:
    """``fn`` called in ``mode``."""

    def run(*args, **kwargs) -> None:
        with mode:
            fn(*args, **kwargs)

    return run


def _fake_mode(module: nn.Module) -> FakeTensorMode | None:
    """The fake mode of the first parameter ``module`` itself holds (its FSDP2 shard), None if it is real."""
    for p in module.parameters(recurse=False):
        local = p.to_local() if hasattr(p, "to_local") else p
        return local.fake_mode if isinstance(local, FakeTensor) else None
    return None


def fake_collectives(objects: Iterable[object]) -> int:
    """Give every FSDP2 module under the modules among ``objects`` (others are skipped) whose parameters are fake
    the fake-buffer comms; returns how many modules it changed (0 without FSDP2 or with real parameters)."""
    changed, seen = 0, set()
    for module in objects:
        if not isinstance(module, nn.Module):
            continue
        for sub in module.modules():
            if not isinstance(sub, FSDPModule) or id(sub) in seen:
                continue
            seen.add(id(sub))
            mode = next(filter(None, map(_fake_mode, sub.modules())), None)
            if mode is None:
                continue
            sub.set_custom_all_gather(FakeAllGather(mode))
            sub.set_custom_reduce_scatter(FakeReduceScatter(mode))
            for group in sub._get_fsdp_state()._fsdp_param_groups:
                for param in group.fsdp_params:
                    param.init_all_gather_outputs = _in_mode(param.init_all_gather_outputs, mode)
            changed += 1
    return changed
