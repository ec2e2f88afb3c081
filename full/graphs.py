r"""Faster sampling passes: ``torch.compile`` of the transformer blocks, and CUDA graphs of a block's passes.

* :func:`compile_blocks` — diffusers' regional compilation (``compile_repeated_blocks(fullgraph=True)``): one graph
  for the 30 identical blocks. Over a :class:`~full.static_cache.StaticKVCache` every pass of a rollout has the same
  shapes, so nothing recompiles after the first block (tested); over the dynamic cache the growing prefix does.
* :class:`GraphedBlockwise` — a :class:`cf_ref.rollout.BlockwiseModel` that captures the two passes of a block once
  each as a CUDA graph and replays them: the denoising pass ``v = run(x, t, RoPE(positions) | cache)`` and the cache
  pass (same, no output, the layers' new K/V kept). Inputs live in static buffers — latents ``[B, b, C, H, W]``,
  timesteps ``[B, b]``, RoPE ``(cos, sin)`` ``[1, b·T, 1, Dh]`` — copied in before each replay; the cache's buffers
  and key mask are static already (written in place, bookkeeping on the host). What changes between blocks and
  cannot live in a graph stays outside it: the host checks, the RoPE table lookup, and the cache's write of a
  committed block into its slots (its position differs every block), done eagerly after the cache-pass replay.

A graph holds the prompt's tensors it was captured with: a new prompt (a new blockwise model) captures anew.
Captures share one memory pool. Without CUDA, ``capture=False`` runs the same plumbing eagerly (each "replay"
re-runs the pass on the static buffers) — what the CPU tests check against plain eager passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from cf_ref.schedule import timestep_from_sigma
from full.blockwise import CausalWanBlockwise, frame_levels
from full.cache import LayerKV
from full.model import CausalWanTransformer3DModel
from full.static_cache import StaticKVCache


def compile_blocks(model: CausalWanTransformer3DModel, **compile_kwargs: Any) -> CausalWanTransformer3DModel:
    """``torch.compile`` the transformer blocks once (regional compilation, ``fullgraph=True``); idempotent.
    ``compile_kwargs`` go to ``torch.compile`` (e.g. ``backend="aot_eager"``, ``mode="max-autotune-no-cudagraphs"``)."""
    if not getattr(model, "_cf_blocks_compiled", False):
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        model.compile_repeated_blocks(fullgraph=True, **compile_kwargs)
        model._cf_blocks_compiled = True
    return model


class StepGraph:
    """One pass ``fn() -> outputs`` over static ``inputs`` (name → tensor), captured as a CUDA graph (after two warm-up
    runs on a side stream) or, without ``capture``, run again on the static inputs at every call."""

    def __init__(self, fn: Callable[[], Any], inputs: dict[str, Tensor], capture: bool, pool: Any = None):
        self.fn, self.inputs, self.graph, self.outputs = fn, inputs, None, None
        if capture:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    fn()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, pool=pool):
                self.outputs = fn()

    def __call__(self, **values: Tensor) -> Any:
        """Copy ``values`` into the static inputs and replay; the outputs are static buffers (copy what you keep)."""
        for name, value in values.items():
            self.inputs[name].copy_(value)
        if self.graph is None:
            self.outputs = self.fn()
        else:
            self.graph.replay()
        return self.outputs


class GraphedBlockwise:
    """:class:`~full.blockwise.CausalWanBlockwise` whose passes replay CUDA graphs over a static cache (see module doc).

    ``capture``: None = on CUDA; True off CUDA is an error. Classifier-free guidance: wrap the guided model's
    ``inner`` (one 2B-batch blockwise model).
    """

    def __init__(self, inner: CausalWanBlockwise, capture: bool | None = None):
        device = inner.model.device
        capture = device.type == "cuda" if capture is None else capture
        if capture and device.type != "cuda":
            raise ValueError(f"CUDA graphs need the model on a CUDA device, it is on {device}")
        self.inner, self.capture = inner, capture
        self.block_size = inner.block_size
        self.pool = torch.cuda.graph_pool_handle() if capture else None
        self.graphs: dict[tuple, StepGraph] = {}

    def new_cache(self, kind: str = "static", max_frames: int | None = None) -> StaticKVCache:
        if kind != "static":
            raise ValueError("CUDA graphs need the static KV cache (cache='static')")
        return self.inner.new_cache("static", max_frames)

    def _inputs(self, x: Tensor, sigma: Tensor, block: int, cache: StaticKVCache) -> dict[str, Tensor]:
        if not isinstance(cache, StaticKVCache):
            raise TypeError(f"CUDA graphs need a StaticKVCache, got {type(cache).__name__}")
        positions = self.inner._positions(x, block, cache)  # host checks; binds the tokens per frame
        cos, sin = self.inner.model.rotary(positions, x.shape[3], x.shape[4])
        return {"x": x, "t": timestep_from_sigma(frame_levels(sigma, x)), "cos": cos, "sin": sin}

    def _graph(self, kind: str, inputs: dict[str, Tensor], cache: StaticKVCache) -> StepGraph:
        key = (kind, id(cache), *((n, tuple(v.shape), v.dtype) for n, v in inputs.items()))
        if key not in self.graphs:
            static = {name: value.clone() for name, value in inputs.items()}
            model, text = self.inner.model, self.inner.text
            layers = len(model.blocks)

            def denoise() -> Tensor:
                rotary = (static["cos"], static["sin"])
                return model.run(static["x"], static["t"], text, torch.arange(0), cache=cache, rotary=rotary)

            def cache_pass() -> list[tuple[Tensor, Tensor]]:
                sinks = [LayerKV() for _ in range(layers)]
                rotary = (static["cos"], static["sin"])
                model.run(
                    static["x"],
                    static["t"],
                    text,
                    torch.arange(0),
                    cache=cache,
                    output_frames=None,
                    sinks=sinks,
                    rotary=rotary,
                )
                return [(s.key, s.value) for s in sinks]

            with torch.no_grad():
                fn = denoise if kind == "velocity" else cache_pass
                self.graphs[key] = StepGraph(fn, static, self.capture, self.pool)
        return self.graphs[key]

    @torch.no_grad()
    def velocity(self, x: Tensor, sigma: Tensor, block: int, cache: StaticKVCache) -> Tensor:
        """Velocity of block ``block`` (x ``[B, b, C, H, W]``, sigma ``[B, b]``) by a graph replay; reads the cache."""
        inputs = self._inputs(x, sigma, block, cache)
        return self._graph("velocity", inputs, cache)(**inputs).to(x.dtype, copy=True)

    @torch.no_grad()
    def commit(self, x: Tensor, sigma: Tensor, block: int, cache: StaticKVCache) -> StaticKVCache:
        """Cache pass by a graph replay, then the eager write of its K/V into the block's slots."""
        inputs = self._inputs(x, sigma, block, cache)
        for layer, (key, value) in enumerate(self._graph("commit", inputs, cache)(**inputs)):
            cache.append(layer, key, value)
        cache.advance(self.block_size)
        return cache
