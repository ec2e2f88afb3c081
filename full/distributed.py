"""One process or many: ``torchrun`` environment, DDP / FSDP2 wrapping, and collectives that vanish on one process.

The same command runs on 1 or N processes. With ``WORLD_SIZE`` unset or 1 nothing is initialised and no
collective is ever called; with N processes the backend is NCCL on CUDA and gloo on CPU.

Every model lives in a :class:`Runner` whose ``forward(fn, *args)`` returns ``fn(model, *args)``: the
causal DiT is used through several methods (``velocity``, ``blockwise`` rollouts), and DDP / FSDP2 only
see calls that go through ``forward``. So a stage writes ``runner(lambda m: m.velocity(...))``.

Wrapping (:func:`wrap_trainable`): DDP replicates the runner; FSDP2 (``torch.distributed.fsdp.fully_shard``)
shards each transformer block and then the runner (the root: every non-block parameter), with bf16
parameters and fp32 gradient reduction under ``Precision.BF16``. Frozen models (teachers, real score, EMA
copies) are sharded the same way under FSDP and replicated under DDP (:func:`place_frozen`). A block's
weights must only be used inside that block's forward (FSDP2 gathers them there).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from cf_ref.errors import UserError
from cf_ref.machine import cuda_unavailable_reason
from full.config import Parallelism, Precision


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size, its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this context initialised the process group (and :func:`shutdown` ends it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def init_distributed(device: str | None = None, timeout_s: float = 1800.0) -> DistContext:
    """Read ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (torchrun) and initialise the process group if N > 1.

    ``device``: ``"cuda"``, ``"cpu"`` or None (CUDA when available). Each process uses ``cuda:LOCAL_RANK``.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise UserError(f"device {device or 'cuda'} requested, but {cuda_unavailable_reason()}")
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    owns = world > 1 and not dist.is_initialized()
    if owns:
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            timeout=datetime.timedelta(seconds=timeout_s),
            **({"device_id": dev} if use_cuda else {}),
        )
    return DistContext(rank=rank, world_size=world, local_rank=local, device=dev, owns_group=owns)


def shutdown(ctx: DistContext) -> None:
    """End the process group if this context started it (a caller's own group is left alone)."""
    if ctx.owns_group and dist.is_initialized():
        dist.barrier()  # no process tears the group down while another is still in a collective
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def all_true(ctx: DistContext, flag: bool) -> bool:
    """Logical AND over processes (every process must call it)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([0.0 if flag else 1.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return bool(t.item() == 0.0)


def mean_over_ranks(ctx: DistContext, values: dict[str, float]) -> dict[str, float]:
    """Average scalar metrics over processes (every process must call it with the same keys)."""
    if not ctx.enabled or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], device=ctx.device, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.tolist())}


def all_gather_object(ctx: DistContext, obj: Any) -> list[Any]:
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class Runner(nn.Module):
    """Routes every use of ``model`` through ``forward`` so that DDP and FSDP2 see it (see module doc)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fn, *args, **kwargs):
        return fn(self.model, *args, **kwargs)


def core(module: nn.Module) -> nn.Module:
    """The model inside a (DDP-wrapped) :class:`Runner`, or the module itself."""
    module = unwrap(module)
    return module.model if isinstance(module, Runner) else module


def reshard_all(module: nn.Module) -> None:
    """Put every FSDP2 parameter group of ``module`` back into its sharded state.

    FSDP2 leaves the root's parameters unsharded after a forward until the backward; a frozen model (an EMA
    copy, a teacher) has no backward, so do this before touching its parameters directly.
    """
    from torch.distributed.fsdp import FSDPModule

    for m in unwrap(module).modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def _mp_policy(precision: Precision):
    """bf16 compute / fp32 reduction under BF16. Forward inputs are *not* cast: the DiT's blocks receive
    dataclasses they write into (the KV-cache sink), which FSDP's input casting would copy; the blocks get
    bf16 activations from the bf16 root anyway."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if precision is Precision.BF16:
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False)
    return MixedPrecisionPolicy(cast_forward_inputs=False)


def _shard(module: nn.Module, blocks: Sequence[nn.Module], precision: Precision) -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    policy = _mp_policy(precision)
    for block in blocks:
        fully_shard(block, mp_policy=policy)
    fully_shard(module, mp_policy=policy)
    return module


def _on_device(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` moved to ``device``; left alone when every tensor is there already (fake tensors of a plan
    cannot be moved in place, see :mod:`full.plan.memory`)."""
    tensors = [*module.parameters(), *module.buffers()]
    if all(t.device == torch.device(device) for t in tensors):
        return module
    return module.to(device)


def wrap_trainable(
    model: nn.Module,
    ctx: DistContext,
    strategy: Parallelism,
    precision: Precision,
    blocks: Sequence[nn.Module] = (),
) -> nn.Module:
    """Move ``model`` to the device in a :class:`Runner`, wrapped for data parallelism (bare on one process).

    ``blocks``: the transformer blocks to shard individually under FSDP2 (the runner is sharded last).
    """
    runner = Runner(_on_device(model, ctx.device))
    if not ctx.enabled:
        return runner
    if strategy is Parallelism.FSDP:
        return _shard(runner, blocks, precision)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(runner, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def place_frozen(
    module: nn.Module,
    ctx: DistContext,
    strategy: Parallelism,
    precision: Precision,
    blocks: Sequence[nn.Module] = (),
) -> nn.Module:
    """A frozen model (no gradients) in a :class:`Runner`: sharded under FSDP (bf16 compute under ``BF16``),
    replicated otherwise (its storage dtype is the caller's choice)."""
    module.requires_grad_(False).eval()
    runner = Runner(_on_device(module, ctx.device))
    if ctx.enabled and strategy is Parallelism.FSDP:
        return _shard(runner, blocks, precision)
    return runner


def unwrap(module: nn.Module) -> nn.Module:
    """The module under a DDP wrapper (FSDP2 shards in place, so it is its own unwrapped module)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


@contextlib.contextmanager
def gradient_sync(module: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce for micro-batches before the last one of an accumulation (DDP / FSDP2)."""
    if enabled:
        yield
        return
    if isinstance(module, nn.parallel.DistributedDataParallel):
        with module.no_sync():
            yield
        return
    setter = getattr(module, "set_requires_gradient_sync", None)  # FSDP2 modules
    if setter is None:
        yield
        return
    setter(False)
    try:
        yield
    finally:
        setter(True)


def clip_grad_norm(module: nn.Module, max_norm: float) -> float:
    """Global gradient-norm clipping over all processes and shards; returns the norm before clipping."""
    params = [p for p in module.parameters() if p.grad is not None]
    if not params:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if hasattr(norm, "full_tensor"):  # DTensor under FSDP2
        norm = norm.full_tensor()
    return float(norm)


def autocast(ctx: DistContext, precision: Precision):
    """bf16 autocast on the process's device under ``BF16``; a no-op context under ``FP32``."""
    if precision is Precision.BF16:
        return torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(tensors: dict[str, Tensor], ctx: DistContext, dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    return {
        k: v.to(device=ctx.device, dtype=dtype if dtype is not None and v.is_floating_point() else v.dtype)
        for k, v in tensors.items()
    }
