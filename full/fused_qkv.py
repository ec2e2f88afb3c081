r"""Self-attention q, k, v of the causal Wan DiT in few passes over memory (the eager path).

diffusers' Wan layer normalises the projected queries and keys over all heads (RMSNorm with a weight), then applies
RoPE on interleaved pairs in the tables' float64 — eight or so elementwise passes over a ``[B, L, H·Dh]`` tensor
each, which on CPU cost as much as a sizeable share of the layer's matmuls. Both are products, so they fold into
one complex multiplication per tensor. With :math:`x \in \mathbb{R}^{H D_h}` one token's projection, :math:`w` the
norm's weight and :math:`e^{i\theta}` the token's RoPE table (pairs :math:`(x_{2j}, x_{2j+1})` read as complex
numbers),

.. math::  \mathrm{RoPE}(\mathrm{RMSNorm}(x)) = (x \odot w) \otimes \bigl(r\, e^{i\theta}\bigr), \qquad
           r = \bigl(\lVert x \rVert^2 / (H D_h) + \epsilon\bigr)^{-1/2},

where the per-token factor :math:`r` joins the small table ``[B, L, 1, Dh/2]`` rather than the big tensor: one
reduction (the norm), one product by :math:`w`, one complex product — written, for a static cache's keys, straight
into the cache's scratch (:meth:`full.static_cache.StaticLayerKV.scratch`), as are the values, projected into it by
``addmm(..., out=)``. Equal to the reference arithmetic up to float32 rounding (tested against
:func:`full.attention.apply_rotary` after the stock norms). Float32 / float64 only (complex half precision is not a
CPU type); under ``torch.compile`` the reference arithmetic is used instead, which inductor fuses (it generates no
complex kernels).
"""

from __future__ import annotations

import torch
from torch import Tensor


def polar_table(cos: Tensor, sin: Tensor, dtype: torch.dtype) -> Tensor | None:
    """RoPE tables ``cos, sin`` ``[1, L, 1, Dh]`` (each frequency twice, :func:`full.attention.apply_rotary`'s form)
    as :math:`e^{i\\theta}` ``[1, L, 1, Dh/2]`` complex of ``dtype`` (float32 → complex64, float64 → complex128);
    None for other dtypes (no fused path)."""
    if dtype not in (torch.float32, torch.float64):
        return None
    return torch.complex(cos[..., 0::2].to(dtype), sin[..., 1::2].to(dtype))


def fused_path(polar: Tensor | None, x: Tensor) -> bool:
    """Whether :func:`normed_rotary` applies: a table was built for ``x``'s dtype and we are not being compiled."""
    if torch.compiler.is_compiling() or polar is None:
        return False
    return polar.dtype == (torch.complex64 if x.dtype == torch.float32 else torch.complex128)


def normed_rotary(norm: torch.nn.Module, x: Tensor, heads: int, polar: Tensor, unfold, out: Tensor | None = None):
    r"""RoPE(RMSNorm(x)) as one complex product (see the module doc).

    norm: the layer's ``torch.nn.RMSNorm`` over ``H·Dh``; x: projections ``[B', L', H·Dh]`` (frames possibly folded
    into the batch); polar: :func:`polar_table` ``[1, L, 1, Dh/2]``; unfold: ``[B', L', ...] → [B, L, ...]`` (a
    view); out: where to write the result ``[B, L, H, Dh]`` (e.g. a cache's scratch; no autograd through it).
    Returns ``[B, L, H, Dh]``.
    """
    eps = norm.eps if norm.eps is not None else torch.finfo(x.dtype).eps
    r = torch.rsqrt(torch.linalg.vector_norm(x, dim=-1, keepdim=True).square() / x.shape[-1] + eps)  # [B', L', 1]
    scaled = x * norm.weight if norm.weight is not None else x
    pairs = unfold(scaled.unflatten(-1, (heads, -1, 2)))  # [B, L, H, Dh/2, 2]
    table = polar * unfold(r.unsqueeze(-1))  # [B, L, 1, Dh/2]
    product = torch.view_as_complex(pairs)
    if out is None:
        return torch.view_as_real(product * table).flatten(-2)
    torch.mul(product, table, out=torch.view_as_complex(out.unflatten(-1, (-1, 2))))
    return out


def project_into(linear: torch.nn.Module, x: Tensor, out: Tensor) -> bool:
    """Write ``linear(x)`` (x ``[B', L', D]``) into ``out`` (``[B, L, H, Dh]``, same elements in the same order) by
    one ``addmm(..., out=)``, if ``linear`` is a plain ``nn.Linear`` and both are contiguous; False if not done."""
    plain = type(linear) is torch.nn.Linear and linear.bias is not None and x.dtype == linear.weight.dtype == out.dtype
    if not (plain and x.is_contiguous() and out.is_contiguous()):
        return False
    torch.addmm(linear.bias, x.reshape(-1, x.shape[-1]), linear.weight.t(), out=out.view(-1, out[0, 0].numel()))
    return True
