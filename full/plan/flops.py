r"""FLOPs and bytes of a computation, counted by PyTorch (``FlopCounterMode``), and the analytic count they must match.

:class:`OpCounter` runs a function under ``torch.utils.flop_counter.FlopCounterMode`` (matrix products,
convolutions, attention; forward and backward) and a byte counter (every non-view ATen op: bytes of its tensor
inputs and outputs — the traffic of an unfused execution, an upper bound of what a fused kernel moves). It works
on fake tensors (shapes only). PyTorch's registry lacks the CPU flash-attention kernel that SDPA dispatches to
on CPU; it is registered here with the same formula as the CUDA kernels.

Analytic count of one DiT pass (:func:`dit_forward_flops`), batch ``B``, ``L`` query tokens, ``L_k`` self-attention
keys (``L`` plus cached ones), ``S`` text tokens, width ``D = H·D_h``, FFN width ``F``, ``n`` modulation rows
(``B``, or ``B·frames`` with per-frame timesteps), patch volume ``P = C_in·p_t·p_h·p_w``, output rows ``L_o``:

.. math::

    \underbrace{2P D\,BL}_{\text{patch}}
    + \underbrace{2(D_t D + D^2)BS}_{\text{text proj.}}
    + \underbrace{2(D_f D + D^2 + 6D^2)\,n}_{\text{time emb.}}
    + N_{layers}\Big[\underbrace{2(4D^2 + 2D^2 + 2DF)BL}_{\text{q,k,v,o; cross q,o; FFN}}
    + \underbrace{2\cdot 2D^2\,BS}_{\text{cross k,v}}
    + \underbrace{4BHL L_k D_h}_{\text{self-attn}} + \underbrace{4BHLSD_h}_{\text{cross-attn}}\Big]
    + \underbrace{2D\,C_{out}p_tp_hp_w\,BL_o}_{\text{head}}

(2·params·tokens for each linear layer; ``QKᵀ`` and ``PV`` are ``2BHL L_k D_h`` each). Cross-attention K/V are
absent when precomputed (``text_kv=False``); the text projection when the context is given. Masked attention is
counted dense, as the kernels compute it. A training step is ≈ 3× the forward (backward = 2×), plus one block
forward per gradient-checkpointed call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import (
    FlopCounterMode,
    flop_registry,
    register_flop_formula,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

aten = torch.ops.aten


def _register_cpu_flash() -> None:
    """Count SDPA's CPU flash kernel (forward, backward) like the CUDA flash kernel."""
    fwd, bwd = (
        aten._scaled_dot_product_flash_attention_for_cpu,
        aten._scaled_dot_product_flash_attention_for_cpu_backward,
    )
    if fwd not in flop_registry:

        @register_flop_formula(fwd)
        def _cpu_flash(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return sdpa_flop_count(query_shape, key_shape, value_shape)

    if bwd not in flop_registry:

        @register_flop_formula(bwd)
        def _cpu_flash_bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kw) -> int:
            return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


_register_cpu_flash()


class ByteCounter(TorchDispatchMode):
    """Bytes read and written by every non-view ATen op (inputs + outputs), summed in :attr:`total`."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not getattr(func, "is_view", False):
            leaves, _ = tree_flatten((args, kwargs or {}, out))
            self.total += sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor))
        return out


@dataclass(frozen=True)
class OpCount:
    """FLOPs and bytes of one run (forward and backward together)."""

    flops: int
    bytes: int


def count_ops(fn: Callable[[], Any]) -> tuple[Any, OpCount]:
    """Run ``fn()`` under ``FlopCounterMode`` and :class:`ByteCounter`; returns its result and the counts."""
    bytes_mode = ByteCounter()
    with FlopCounterMode(display=False) as flops_mode, bytes_mode:
        result = fn()
    return result, OpCount(flops_mode.get_total_flops(), bytes_mode.total)


@dataclass(frozen=True)
class PassShape:
    """The sizes of one DiT pass (see the module doc): tokens of the pass, keys, text, modulation rows, outputs."""

    batch: int
    tokens: int
    keys: int
    text_tokens: int
    modulation_rows: int
    output_tokens: int
    text_projection: bool = True
    text_kv: bool = True


def dit_forward_flops(config: dict[str, Any], shape: PassShape) -> int:
    """The module doc's analytic FLOPs of one forward pass of a Wan DiT with ``config`` (diffusers kwargs)."""
    heads, head_dim = config["num_attention_heads"], config["attention_head_dim"]
    d, ffn, layers = heads * head_dim, config["ffn_dim"], config["num_layers"]
    pt, ph, pw = config["patch_size"]
    patch_in, patch_out = config["in_channels"] * pt * ph * pw, config["out_channels"] * pt * ph * pw
    b, length, keys, text = shape.batch, shape.tokens, shape.keys, shape.text_tokens
    total = 2 * patch_in * d * b * length
    total += 2 * (config["text_dim"] * d + d * d) * b * text if shape.text_projection else 0
    total += 2 * (config["freq_dim"] * d + d * d + 6 * d * d) * shape.modulation_rows
    per_layer = 2 * (6 * d * d + 2 * d * ffn) * b * length
    per_layer += 2 * 2 * d * d * b * text if shape.text_kv else 0
    per_layer += 4 * b * heads * length * (keys + text) * head_dim
    total += layers * per_layer
    total += 2 * d * patch_out * b * shape.output_tokens
    return total
