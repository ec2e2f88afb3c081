r"""The authors' gradient through the KV cache, as an option of the self-forcing rollout (``dmd.cache_gradient``).

cf-ref's rollout commits constants: :meth:`CausalWanBlockwise.commit` appends detached K/V, so a block's samples
reach the weights only through its own exit call — the method as described. The authors' cache
(``CausalWanSelfAttention.forward`` in ``wan/modules/causal_model.py`` of thu-ml/Causal-Forcing) is written in place
by every call; the exit call's write carries gradient and the ``no_grad`` cache pass overwrites the values, not the
history. :class:`ExitGradientBlockwise` reproduces that with
:func:`cf_ref.rollout.with_exit_gradient`: for every layer, the committed K/V ``[B, b·T, H, Dh]`` are the cache
pass's values carrying the gradient of the block's last grad-enabled call (its exit call),

.. math::  K_j^{\text{cache}} = \mathrm{sg}(K_j^{\text{commit}}) + \bigl(K_j^{\text{exit}} - \mathrm{sg}(K_j^{\text{exit}})\bigr)

(likewise V), so later blocks attend to the clean values and send their gradient into block j's exit call. The
forward is unchanged bit for bit; nothing but the cache's autograd graph differs. Only the adapter, the model's
``sinks`` argument and the cache's ``append(detach=False)`` are involved, not the attention kernels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cf_ref.rollout import with_exit_gradient
from full.blockwise import CausalWanBlockwise
from full.cache import LayerKV, WanKVCache
from full.model import CausalWanTransformer3DModel


class ExitGradientBlockwise(CausalWanBlockwise):
    """:class:`CausalWanBlockwise` whose commits carry the exit call's gradient (see module doc)."""

    def __init__(self, model: CausalWanTransformer3DModel, text, block_size: int, window: int | None):
        super().__init__(model, text, block_size, window)
        self._exit: tuple[int, list[LayerKV]] | None = None  # (block, K/V per layer) of the last grad-enabled call

    def velocity(self, x: Tensor, sigma: Tensor, block: int, cache: WanKVCache) -> Tensor:
        """As :meth:`CausalWanBlockwise.velocity`; a grad-enabled call also keeps its K/V for the block's commit."""
        if not torch.is_grad_enabled():
            return super().velocity(x, sigma, block, cache)
        sinks = [LayerKV() for _ in self.model.blocks]
        out = self.run_block(x, sigma, block, cache, sinks=sinks)
        self._exit = (block, sinks)
        return out

    def commit(self, x: Tensor, sigma: Tensor, block: int, cache: WanKVCache) -> WanKVCache:
        """Cache pass (no grad) whose appended K/V carry the gradient of the block's exit call, if it had one."""
        clean = [LayerKV() for _ in self.model.blocks]
        with torch.no_grad():
            self.run_block(x, sigma, block, cache, output=False, sinks=clean)
        exit_kv = self._exit[1] if self._exit is not None and self._exit[0] == block else None
        self._exit = None
        for i, kv in enumerate(clean):
            if exit_kv is None:
                cache.append(i, kv.key, kv.value)
            else:
                key, value = with_exit_gradient(kv.key, exit_kv[i].key), with_exit_gradient(kv.value, exit_kv[i].value)
                cache.append(i, key, value, detach=False)
        cache.advance(self.block_size)
        return cache
