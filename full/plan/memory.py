"""Peak memory of a training or sampling step without allocating it: fake tensors, a fake process group, and
PyTorch's memory tracker.

* :func:`fake_tensors` — models and inputs built inside it are ``FakeTensor`` s (shapes, dtypes, no storage);
  the step itself runs *outside* it, so integer bookkeeping (positions, exit steps, random draws) stays real
  while every operation on a fake tensor stays fake (``allow_non_fake_inputs``).
* :func:`simulated_ranks` — ``N`` ranks as rank 0 of a ``"fake"`` process group
  (``torch.testing._internal.distributed.fake_pg``): FSDP2's ``fully_shard`` shards for ``N`` ranks and its
  collectives return at once, so the tracker sees exactly one rank's shards and gathered buffers (made fake by
  :func:`full.plan.collectives.fake_collectives`).
* :func:`track_peak` — runs a step under ``torch.distributed._tools.mem_tracker.MemTracker`` (parameters,
  buffers, gradients, optimizer states, activations, temporaries, per storage) and splits the peak into
  :class:`MemoryPeak`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.distributed._tools.mem_tracker import _TOTAL_KEY, MemTracker, _MemRefType
from torch.utils._python_dispatch import TorchDispatchMode

from full.distributed import DistContext

GIB = 2**30


class _Tracker(MemTracker):
    """``MemTracker`` for a whole stage step: it installs its gradient hooks only on parameters that require
    gradients (``MemTracker`` 2.13 hooks every parameter of a module it enters, which a frozen parameter refuses),
    and lets a root module run many times in one step (a rollout, an ODE solve), which ``MemTracker`` takes for
    a next iteration and refuses. Only the module-wise statistics, which the plan does not read, lose detail."""

    def _pre_fw_hook(self, module: nn.Module, inputs) -> None:
        if module in self.memory_tracking and not self._mod_tracker.is_bw:
            self._track_inputs_or_outputs(inputs)
            return
        super()._pre_fw_hook(module, inputs)

    def _track_module_params_and_buffers(self, module: nn.Module, install_grad_hooks: bool = True):
        out = super()._track_module_params_and_buffers(module, install_grad_hooks=False)
        if install_grad_hooks:
            for p in module.parameters():
                if p.requires_grad and self._param_to_grad_hook_handles.get(p, None) is None:
                    self._param_to_grad_hook_handles[p] = (
                        p.register_hook(self._track_grad),
                        p.register_post_accumulate_grad_hook(lambda q: self._track_grad(q.grad)),
                    )
        return out

    def _update_peak_stats(self, peak_state) -> None:
        # only the global peak (MemTracker also updates every active module's peak after every op, which
        # dominates a real-size simulation's run time and is not read here)
        for dev, snap in self._curr_mem_snap.items():
            if self._peak_mem.get(dev, 0) < snap[_TOTAL_KEY]:
                self._peak_mem[dev] = snap[_TOTAL_KEY]
                self._peak_mem_snap[dev] = dict(snap)

    def _track_grad(self, grad: torch.Tensor) -> None:
        self._update_and_maybe_create_winfos(grad, _MemRefType.GRAD)


class FakeScalarsReadZero(TorchDispatchMode):
    """Reading a Python number out of a fake tensor (``float(loss)``, ``.item()``) gives 0 instead of an error.

    The stages read numbers only to log them (losses, norms); their control flow depends on real tensors (step
    counts, exit steps, positions), which stay real in the plan. Real tensors read back as usual.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and isinstance(args[0], FakeTensor):
            return False if args[0].dtype is torch.bool else 0
        return func(*args, **(kwargs or {}))


def fake_tensors() -> FakeTensorMode:
    """The mode to build models and inputs in (see module doc)."""
    return FakeTensorMode(allow_non_fake_inputs=True)


@contextlib.contextmanager
def simulated_ranks(world_size: int) -> Iterator[DistContext]:
    """Rank 0 of ``world_size`` fake ranks (no process group for 1). Refuses if a process group exists."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if world_size == 1:
        yield DistContext()
        return
    if dist.is_initialized():
        raise RuntimeError("a process group is already initialised; the plan simulates its own ranks")
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world_size)
    try:
        yield DistContext(rank=0, world_size=world_size)
    finally:
        dist.destroy_process_group()


def storage_bytes(modules: Sequence[nn.Module]) -> int:
    """Bytes of the parameters and buffers of ``modules`` this rank holds (an FSDP2 parameter: its local shard)."""
    seen: set[int] = set()  # ids of the parameters and buffers (``to_local()`` makes a new object at each call)
    total = 0
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            if id(t) not in seen:
                seen.add(id(t))
                local = t.to_local() if hasattr(t, "to_local") else t
                total += local.numel() * local.element_size()
    return total


@dataclass(frozen=True)
class MemoryPeak:
    """One rank's peak (bytes), split: the trained models' parameters (with any weights FSDP gathered at that
    moment, and buffers), their gradients, optimizer state, EMA copies, frozen models, activations (activations,
    temporaries, inputs)."""

    total: int
    parameters: int
    gradients: int
    optimizer: int
    ema: int
    frozen: int
    activations: int

    def gib(self) -> dict[str, float]:
        return {k: v / GIB for k, v in self.__dict__.items()}


def _category(snapshot: dict, name: str) -> int:
    return sum(v for k, v in snapshot.items() if getattr(k, "value", k) == name)


def track_peak(
    step: Callable[[], object],
    tracked: Sequence[nn.Module | torch.optim.Optimizer | torch.Tensor],
    ema: Sequence[nn.Module] = (),
    frozen: Sequence[nn.Module] = (),
) -> MemoryPeak:
    """Run ``step()`` under ``MemTracker``, with ``tracked`` (every model, optimizer, input that exists before
    the step) registered, and split the peak (see :class:`MemoryPeak`)."""
    tracker = _Tracker()
    tracker.track_external(*tracked)
    with tracker, FakeScalarsReadZero():
        step()
    snaps = tracker.get_tracker_snapshot("peak")
    snap = snaps.get(torch.device("cpu"), next(iter(snaps.values()), {}))
    ema_bytes, frozen_bytes = storage_bytes(ema), storage_bytes(frozen)
    weights = _category(snap, "Parameter") + _category(snap, "Buffer")
    acts = sum(_category(snap, n) for n in ("Activation", "Temp", "Other"))
    return MemoryPeak(
        total=snap.get("Total", 0),
        parameters=weights - ema_bytes - frozen_bytes,
        gradients=_category(snap, "Gradient"),
        optimizer=_category(snap, "Optstate"),
        ema=ema_bytes,
        frozen=frozen_bytes,
        activations=acts,
    )
