"""FSDP2's collective buffers are fake in a simulation of several ranks: the real storage a simulated step creates
does not grow with the number of ranks, and the memory tracker's peak is the one it sees with real buffers."""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import full.plan.simulate as simulate_module
from full.model import CausalWanTransformer3DModel
from full.plan.collectives import fake_collectives
from full.plan.memory import simulated_ranks
from full.plan.simulate import simulate_family
from full.plan.stages import BUILDERS

EMPTY = "aten.empty.memory_format"


class RealStorages(TorchDispatchMode):
    """Bytes of the real (not fake) storages each op creates (outputs that are neither views nor inputs), per op
    name, and the largest one."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes: Counter[str] = Counter()
        self.largest: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "is_view", False):
            return out
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if type(t) is torch.Tensor}
        for t in tree_flatten(out)[0]:
            if type(t) is torch.Tensor and t.untyped_storage().data_ptr() not in inputs:
                n = t.untyped_storage().nbytes()
                self.bytes[str(func)] += n
                self.largest[str(func)] = max(self.largest[str(func)], n)
        return out


def _real_storages(config, arch, ranks: int) -> RealStorages:
    mode = RealStorages()
    with mode:
        simulate_family(config, "ar-diffusion", ranks, arch, count=False)
    return mode


def test_real_storage_does_not_grow_with_ranks(small_config, small_arch):
    """On 8 simulated ranks every op creates the same real storage as on one (the real integer bookkeeping,
    random draws, zero batches), except FSDP2's bf16 copy of a rank's shards before an all-gather (allocated
    outside the comms, never written: the copy into it runs in the fake mode), no bigger than all shards together.
    With FSDP2's own buffers the gathered weights were real and every layer computed on them (110 MB at
    4 blocks of 16×16 latents against 0.8 MB on one rank)."""
    one, eight = _real_storages(small_config, small_arch, 1), _real_storages(small_config, small_arch, 8)
    compute_one = sum(v for k, v in one.bytes.items() if k != EMPTY)
    compute_eight = sum(v for k, v in eight.bytes.items() if k != EMPTY)
    assert compute_eight <= 1.02 * compute_one
    with torch.device("meta"):
        weights = sum(p.numel() for p in CausalWanTransformer3DModel(**small_arch.base).parameters())
    assert 0 < eight.largest[EMPTY] <= 2 * weights / 8


def test_the_peak_is_the_one_seen_with_fsdp_buffers(small_config, small_arch, monkeypatch):
    """The tracker's peak and split on 4 ranks are the same with fake collective buffers as with FSDP2's own
    (real) ones: same shapes, same dtypes, same lifetimes."""
    fake = simulate_family(small_config, "ar-diffusion", 4, small_arch, count=False)
    monkeypatch.setattr(simulate_module, "fake_collectives", lambda modules: 0)
    real = simulate_family(small_config, "ar-diffusion", 4, small_arch, count=False)
    assert [p.memory for p in fake] == [p.memory for p in real]


def test_only_fake_sharded_modules_change(small_config, small_arch):
    """Every FSDP2 module of a fake model gets the fake comms (the blocks and the root); real models and one
    rank (no FSDP2) are left alone."""
    for ranks, fake, expected in ((2, True, small_arch.base["num_layers"] + 1), (2, False, 0), (1, True, 0)):
        with simulated_ranks(ranks) as ctx:
            stage = BUILDERS["ar-diffusion"](small_config, ctx, small_arch, fake)
            assert fake_collectives([*stage.models, *stage.tracked]) == expected
