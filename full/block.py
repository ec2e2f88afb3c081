r"""diffusers' Wan transformer block with an inference path that allocates nothing it can reuse.

The stock ``WanTransformerBlock.forward`` computes, per block (``x`` the hidden states ``[B, L, D]``,
``(shift, scale, gate, c_shift, c_scale, c_gate)`` the six modulation rows ``[B, 1, D]``),

.. math::  x \leftarrow x + g \odot \mathrm{SA}\bigl(\mathrm{LN}(x)(1 + s) + \mathrm{shift}\bigr), \quad
           x \leftarrow x + \mathrm{CA}(\mathrm{LN}_2(x)), \quad
           x \leftarrow x + g_c \odot \mathrm{FFN}\bigl(\mathrm{LN}(x)(1 + s_c) + \mathrm{shift}_c\bigr)

out of place: every product, sum and the FFN's GELU ``[B, L, 8960]`` is a fresh tensor. On CPU a fresh large
tensor is fresh pages from the kernel, whose first touch costs about as much as the arithmetic, so these
elementwise steps (and not the KV cache) made most of a KV-cached pass's time outside matmuls and attention.
:class:`CausalWanTransformerBlock` computes the same expression with the same operations in the same order, in
place on the tensors the layers just produced (the norm's output, the attention's and the FFN's outputs, the GELU
on the FFN's first projection), when no autograd graph is recorded, weights are float32, nothing compiles the
block (inductor fuses these anyway) and the temb is per sample or per frame (``[B, 6, D]``). Otherwise, and for the
per-token temb of Wan2.2, it is the stock forward. Bit for bit the stock block's output (tested).

On CPU the FFN's first projection ``[B, L, F]`` (the block's largest tensor, 56 MB a latent frame at Wan's
``F = 8960``) is written by ``addmm(..., out=)`` into the model's :class:`full.workspace.Workspace` (shared by its
blocks, which run one after another) instead of a fresh tensor: a sampling process no longer faults in fresh pages
for it every pass. The same kernel as ``nn.Linear``'s, so the same bits (tested).
"""

from __future__ import annotations

import torch
from diffusers.models.activations import GELU
from diffusers.models.transformers.transformer_wan import WanTransformerBlock
from torch import Tensor

from full.fused_qkv import project_into
from full.workspace import Workspace


class CausalWanTransformerBlock(WanTransformerBlock):
    """``WanTransformerBlock`` (same modules and weights) whose no-grad float32 forward works in place (module doc);
    ``workspace``: where the FFN hidden goes on CPU (None: a fresh tensor each pass)."""

    workspace: Workspace | None = None

    def forward(self, hidden_states: Tensor, encoder_hidden_states, temb: Tensor, rotary_emb) -> Tensor:
        if not self._in_place(hidden_states, temb):
            return super().forward(hidden_states, encoder_hidden_states, temb, rotary_emb)
        shift, scale, gate, c_shift, c_scale, c_gate = (self.scale_shift_table + temb.float()).chunk(6, dim=1)
        x = self.norm1(hidden_states).mul_(1 + scale).add_(shift)
        x = self.attn1(x, None, None, rotary_emb).mul_(gate).add_(hidden_states)  # x + SA·g
        x = self.attn2(self.norm2(x), encoder_hidden_states, None, None).add_(x)  # x + CA
        y = self.norm3(x).mul_(1 + c_scale).add_(c_shift)
        proj, out = self.ffn.net[0], self.ffn.net[2]
        y = self._ffn_hidden(proj.proj, y)
        y = out(torch._C._nn.gelu_(y, approximate=proj.approximate)).mul_(c_gate).add_(x)  # x + FFN·g_c
        return y

    def _ffn_hidden(self, linear: torch.nn.Linear, x: Tensor) -> Tensor:
        """``linear(x)`` ``[B, L, F]``, into the workspace's ``"ffn"`` tensor on CPU (module doc)."""
        if self.workspace is None or x.device.type != "cpu":
            return linear(x)
        out = self.workspace.tensor("ffn", (*x.shape[:-1], linear.out_features), x.dtype, x.device)
        return out if project_into(linear, x, out) else linear(x)

    def _in_place(self, hidden_states: Tensor, temb: Tensor) -> bool:
        if torch.compiler.is_compiling() or torch.is_grad_enabled() or temb.ndim != 3:
            return False
        net = self.ffn.net
        dropout = type(net[1]) is torch.nn.Dropout and (net[1].p == 0 or not self.training)
        stock_ffn = len(net) == 3 and type(net[0]) is GELU and dropout
        return stock_ffn and hidden_states.dtype == torch.float32 and self.scale_shift_table.dtype == torch.float32
