r"""The causal Wan2.1 DiT: diffusers' ``WanTransformer3DModel`` with frame masks, per-frame timesteps and a KV cache.

:class:`CausalWanTransformer3DModel` *is* a ``WanTransformer3DModel`` (same modules, same state-dict
keys, same config), so ``CausalWanTransformer3DModel.from_pretrained(local_dir)`` loads a diffusers-format
Wan2.1 transformer and ``save_pretrained`` writes one that stock diffusers loads. The only change is the
attention processors (:mod:`full.attention`); the stock ``forward`` is untouched and still bidirectional.

Python API (states in cf_ref's layout ``[B, F, C, H, W]``, noise levels σ ∈ [0, 1], ``t = 1000σ``)::

    model = CausalWanTransformer3DModel.from_pretrained(path)        # or full.tiny.tiny_transformer()

    # full-sequence modes (training, teachers, critics)
    v = model.velocity(x, sigma, text_embeds, mode=AttentionMode.BIDIRECTIONAL)
    v = model.velocity(x, sigma, text_embeds, mode=AttentionMode.BLOCK_CAUSAL, block_size=3)
    v = model.velocity(x, sigma, text_embeds, mode=AttentionMode.TEACHER_FORCING, block_size=3, clean=x0)
    #   x: [B, F, C, H, W] noisy latents; sigma: float, [B] or [B, F] (per frame); text_embeds: [B, L, D_text]
    #   returns the velocity v = ε - x0, [B, F, C, H, W] (same dtype as x)

    # block by block with a KV cache (sampling, self-forcing rollout, AR-teacher ODE)
    bw = model.blockwise(text_embeds, block_size=3, window=None)     # a cf_ref.rollout.BlockwiseModel
    cache = bw.new_cache()                 # optionally bw.prefill(image_latent, cache): image-to-video
    out = cf_ref.rollout.few_step_rollout(bw, noise, 3, sigmas, cache)           # or ar_ode_sample(...)
    gbw = model.guided_blockwise(cond_embeds, uncond_embeds, scale=6.0, block_size=3)  # CFG AR teacher

    model.mask_kernel = MaskKernel.FLEX    # masked modes: SDPA bool mask (default off CUDA) or FlexAttention
    full.dtypes.cast_keeping_fp32(model, torch.bfloat16)  # bf16, Wan's fp32 modules kept (like from_pretrained)
    model.enable_gradient_checkpointing()      # training memory
    model.compile_repeated_blocks(fullgraph=True)  # one compiled block graph for all layers

Modes (frame visibility from :mod:`cf_ref.masks`, expanded to tokens by ``token_mask``):

* bidirectional — every token sees every token; with a per-sample σ this is exactly the stock forward;
* block-causal — frame i sees frames of blocks ≤ block(i) (optionally the last ``window`` blocks);
* teacher forcing — the sequence ``[clean ; noisy]`` (2F frames): clean frames at σ = 0 (or
  ``clean_sigma``) with block-causal visibility among themselves, noisy frames see the clean frames of
  earlier blocks and their own noisy block; RoPE frame positions of the clean half equal those of the
  noisy half (``0…F-1`` twice); the output is the noisy half.
* KV-cached (:class:`full.blockwise.CausalWanBlockwise`, from ``blockwise``) — a block of frames attends to
  the cached K/V of the committed frames and to itself (:mod:`full.blockwise`).

Gradients: ``velocity`` and ``CausalWanBlockwise.velocity`` are differentiable (gradient checkpointing
via diffusers' ``enable_gradient_checkpointing`` applies to them); ``commit`` always runs without grad and
the cache stores detached tensors (:mod:`full.cache_gradient` is the one exception, an option of the DMD stage). The prompt's cross-attention K/V are computed when ``blockwise`` is
called, under the grad mode in force then — build the blockwise model with grad enabled when the
rollout must train the text/cross-attention weights.

Sizes: tokens per frame ``T = (H/p_h)(W/p_w)`` from the latent size and the config's patch size; the
number of layers, heads, dims all come from the config.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import Any

import torch
from diffusers import WanTransformer3DModel
from einops import rearrange
from torch import Tensor

from cf_ref.masks import AttentionMode, frame_visibility
from cf_ref.schedule import timestep_from_sigma
from full.architectures import WAN21_T2V_1_3B, WAN21_T2V_14B, WAN22_TI2V_5B, check_supported  # noqa: F401
from full.attention import (
    CausalWanCrossAttnProcessor,
    CausalWanSelfAttnProcessor,
    CrossAttentionInputs,
    MaskKernel,
    SelfAttentionInputs,
    build_mask,
    cross_attention_kv,
    resolve_kernel,
)
from full.block import CausalWanTransformerBlock
from full.blockwise import CausalWanBlockwise, GuidedBlockwise, frame_levels
from full.cache import LayerKV, TextContext, WanKVCache
from full.fused_qkv import polar_table
from full.static_cache import StaticKVCache, StaticLayerKV
from full.timestep_embedding import timestep_sinusoid
from full.workspace import Workspace

#: The released transformers' configurations live with the rest of each base model's settings in
#: :mod:`full.architectures` (re-exported here): ``CausalWanTransformer3DModel(**WAN21_T2V_1_3B)`` builds the
#: real-size model with random weights (benchmarks, memory checks).


class CausalWanTransformer3DModel(WanTransformer3DModel):
    """``WanTransformer3DModel`` + causal attention processors (see the module doc for the API)."""

    _repeated_blocks = ["WanTransformerBlock", "CausalWanTransformerBlock"]  # regional compilation finds either
    _no_split_modules = ["WanTransformerBlock", "CausalWanTransformerBlock"]

    @functools.wraps(WanTransformer3DModel.__init__)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_supported(self.config)
        self.install_causal_processors()
        self.mask_kernel = MaskKernel.AUTO
        self._masks: dict[Hashable, Any] = {}

    # ------------------------------------------------------------------ setup
    def install_causal_processors(self) -> None:
        """(Re)install the causal self- and cross-attention processors on every block (and its in-place inference
        forward, :class:`full.block.CausalWanTransformerBlock`: same modules and weights; one shared workspace)."""
        workspace = Workspace()
        for block in self.blocks:
            block.__class__ = CausalWanTransformerBlock
            block.workspace = workspace
            block.attn1.set_processor(CausalWanSelfAttnProcessor())
            block.attn2.set_processor(CausalWanCrossAttnProcessor())

    def _check_processors(self) -> None:
        for block in self.blocks:
            if not isinstance(block.attn1.processor, CausalWanSelfAttnProcessor) or not isinstance(
                block.attn2.processor, CausalWanCrossAttnProcessor
            ):
                raise RuntimeError(
                    "attention processors were replaced; call model.install_causal_processors() before causal use"
                )

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.patch_embedding.weight.dtype

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """Latent ``(H, W)`` → token grid ``(H/p_h, W/p_w)``; ``T = h·w`` tokens per frame."""
        _, ph, pw = self.config.patch_size
        if height % ph or width % pw:
            raise ValueError(f"latent size {height}x{width} is not a multiple of the patch size {ph}x{pw}")
        return height // ph, width // pw

    def tokens_per_frame(self, height: int, width: int) -> int:
        h, w = self.token_grid(height, width)
        return h * w

    # ------------------------------------------------------------------ inputs
    def _check_latents(self, x: Tensor, name: str = "x") -> None:
        c = self.config.in_channels
        if x.ndim != 5 or x.shape[2] != c:
            raise ValueError(f"{name} must be latents [B, F, C={c}, H, W], got shape {tuple(x.shape)}")
        self.token_grid(x.shape[3], x.shape[4])

    def text_context(self, text_embeds: Tensor | TextContext, precompute_kv: bool = False) -> TextContext:
        """Project the prompt once: ``[B, L, D_text]`` → :class:`TextContext` (optionally with per-layer K/V)."""
        if isinstance(text_embeds, TextContext):
            if not precompute_kv or text_embeds.keys is not None:
                return text_embeds
            kv = [cross_attention_kv(block.attn2, text_embeds.hidden) for block in self.blocks]
            return TextContext(text_embeds.hidden, text_embeds.dtype, tuple(k for k, _ in kv), tuple(v for _, v in kv))
        d = self.config.text_dim
        if text_embeds.ndim != 3 or text_embeds.shape[-1] != d:
            raise ValueError(f"text_embeds must be [B, L, D_text={d}], got shape {tuple(text_embeds.shape)}")
        embedder = self.condition_embedder.text_embedder
        raw = text_embeds.to(embedder.linear_1.weight.dtype)
        hidden = embedder(raw)
        if not precompute_kv:
            return TextContext(hidden=hidden, dtype=raw.dtype)
        kv = [cross_attention_kv(block.attn2, hidden) for block in self.blocks]
        return TextContext(hidden=hidden, dtype=raw.dtype, keys=tuple(k for k, _ in kv), values=tuple(v for _, v in kv))

    def rotary(self, positions: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        """RoPE ``(cos, sin)`` ``[1, F·h·w, 1, Dh]`` for frames at ``positions`` ``[F]`` on a latent ``H×W`` grid.

        ``positions = arange(F)`` reproduces diffusers' ``WanRotaryPosEmbed`` (float64 tables; float32 when
        the model computes in half precision); the KV cache offsets the positions, teacher forcing repeats
        them.
        """
        rope = self.rope
        if positions.numel() and int(positions.max()) >= rope.max_seq_len:
            raise ValueError(f"frame position {int(positions.max())} exceeds rope_max_seq_len={rope.max_seq_len}")
        h, w = self.token_grid(height, width)
        f = positions.numel()
        idx = positions.to(rope.freqs_cos.device)
        split = [rope.t_dim, rope.h_dim, rope.w_dim]

        def table(freqs: Tensor) -> Tensor:
            ft, fh, fw = freqs.split(split, dim=1)
            parts = [
                ft[idx].view(f, 1, 1, -1).expand(f, h, w, -1),
                fh[:h].view(1, h, 1, -1).expand(f, h, w, -1),
                fw[:w].view(1, 1, w, -1).expand(f, h, w, -1),
            ]
            return torch.cat(parts, dim=-1).reshape(1, f * h * w, 1, -1)

        cos, sin = table(rope.freqs_cos), table(rope.freqs_sin)
        if self.compute_dtype in (torch.bfloat16, torch.float16):
            # diffusers keeps the tables in float64, which makes the rotation a float64 computation; for
            # half-precision q/k float32 tables give the same rounded result at half the memory traffic
            cos, sin = cos.float(), sin.float()
        return cos, sin

    def time_embedding(self, timestep: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Wan's time embedding of ``timestep`` ``[B]`` or ``[B, F]`` (0…1000).

        Returns ``temb`` ``[*t, D]`` (final-layer modulation) and ``proj`` ``[*t, 6, D]`` (block
        modulation), computed like ``WanTimeTextImageEmbedding`` (``dtype`` = the raw text dtype) except for
        the sinusoid, which is float64 as in the authors' Wan (:func:`full.timestep_embedding.timestep_sinusoid`).
        """
        ce = self.condition_embedder
        freq = timestep_sinusoid(timestep.flatten(), ce.timesteps_proj.num_channels)
        emb_dtype = next(iter(ce.time_embedder.parameters())).dtype
        freq = freq.to(torch.float32 if emb_dtype == torch.int8 else emb_dtype)
        temb = ce.time_embedder(freq).to(dtype)
        proj = ce.time_proj(ce.act_fn(temb))
        temb = temb.unflatten(0, timestep.shape)
        proj = proj.unflatten(0, timestep.shape).unflatten(-1, (6, -1))
        return temb, proj

    def _mask(self, mode: AttentionMode, frames: int, block_size: int, window: int | None, tokens: int, device):
        kernel = resolve_kernel(self.mask_kernel, device)
        key = (mode, frames, block_size, window, tokens, str(device), kernel)
        if key not in self._masks:
            vis = frame_visibility(mode, frames, block_size, window)
            self._masks[key] = build_mask(vis, tokens, kernel, device)
        return self._masks[key]

    # ------------------------------------------------------------------ core
    def _cached_or_empty(
        self, cache: WanKVCache, layer: int, batch: int, frames: int
    ) -> tuple[Tensor, Tensor] | StaticLayerKV:
        """This layer's cache prefix for a pass of ``frames`` frames: the cached ``(key, value)`` (empty ones
        while the cache is empty) or, for a :class:`~full.static_cache.StaticKVCache`, its fixed-shape view."""
        heads, head_dim = self.config.num_attention_heads, self.config.attention_head_dim
        empty = torch.empty(batch, 0, heads, head_dim, device=self.device, dtype=self.compute_dtype)
        if isinstance(cache, StaticKVCache):
            return cache.layer(layer, empty, frames)
        kv = cache.get(layer)
        return kv if kv is not None else (empty, empty)

    def run(
        self,
        latents: Tensor,
        timestep: Tensor,
        text: TextContext,
        positions: Tensor,
        mask: Any = None,
        cache: WanKVCache | None = None,
        write: bool = False,
        output_frames: slice | None = slice(None),
        sinks: list[LayerKV] | None = None,
        rotary: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor | None:
        r"""One DiT pass over frames ``latents`` ``[B, F, C, H, W]`` at RoPE frame ``positions`` ``[F]``.

        timestep ``[B]`` (one per sample: the stock computation) or ``[B, F]`` (per frame: frames are
        folded into the batch for the modulation). Returns the velocity of ``output_frames``
        ``[B, F_out, C, H, W]`` in the compute dtype, or None when ``output_frames`` is None (cache pass).
        With a cache, each layer leaves its new K/V (post-RoPE, carrying the pass's autograd graph) in ``sinks``
        (one :class:`~full.cache.LayerKV` per layer; new ones unless given) and ``write`` appends them (detached).
        ``rotary``: the RoPE table of ``positions`` computed beforehand (:meth:`rotary`; a CUDA graph's static input).
        """
        if write and cache is None:
            raise ValueError("a cache pass (write=True) needs a cache")
        b, f, _, height, width = latents.shape
        h, w = self.token_grid(height, width)
        x = self.patch_embedding(rearrange(latents.to(self.compute_dtype), "b f c h w -> b c f h w"))
        hidden = rearrange(x, "b d f h w -> b (f h w) d").contiguous()
        temb, proj = self.time_embedding(timestep, text.dtype)
        fold = f if timestep.ndim == 2 else 1
        if fold > 1:
            hidden = rearrange(hidden, "b (f t) d -> (b f) t d", f=fold)
        proj = proj.flatten(0, 1) if timestep.ndim == 2 else proj  # [(B·F), 6, D] or [B, 6, D]
        rotary = self.rotary(positions, height, width) if rotary is None else rotary
        polar = polar_table(*rotary, self.compute_dtype)  # once per pass: the fused q/k path's RoPE table
        # KV-cached passes always get a (possibly empty) prefix and a sink, so that under torch.compile every
        # layer and every block of a rollout reuses one graph (only the prefix length varies).
        if sinks is not None and (cache is None or len(sinks) != len(self.blocks)):
            raise ValueError(f"sinks need a cache and one LayerKV per transformer block ({len(self.blocks)})")
        if cache is not None and sinks is None:
            sinks = [LayerKV() for _ in self.blocks]
        for i, block in enumerate(self.blocks):
            cached = None if cache is None else self._cached_or_empty(cache, i, b, f)
            sink = sinks[i] if sinks is not None else None
            self_inputs = SelfAttentionInputs(rotary, fold, mask, cached, sink, polar)
            kv = (text.keys[i], text.values[i]) if text.keys is not None else None
            cross_inputs = CrossAttentionInputs(text.hidden, kv, fold)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden = self._gradient_checkpointing_func(block, hidden, cross_inputs, proj, self_inputs)
            else:
                hidden = block(hidden, cross_inputs, proj, self_inputs)
        if write:
            for i, sink in enumerate(sinks):
                cache.append(i, sink.key, sink.value)
        if output_frames is None:
            return None
        hidden = rearrange(hidden, "(b f) t d -> b f t d", f=fold) if fold > 1 else hidden
        return self._output_head(hidden.reshape(b, f, h * w, -1)[:, output_frames], temb, output_frames, h, w)

    def _output_head(self, hidden: Tensor, temb: Tensor, output_frames: slice, h: int, w: int) -> Tensor:
        """Wan's final layer: modulated norm (per frame when ``temb`` is ``[B, F, D]``, per sample when ``[B, D]``),
        projection, unpatchify. hidden: ``[B, Fo, T, D]`` → velocity ``[B, Fo, C, H, W]``."""
        pt, ph, pw = self.config.patch_size
        if temb.ndim == 3:  # per frame: [B, Fo, 1, D]
            shift, scale = (self.scale_shift_table.unsqueeze(0) + temb[:, output_frames].unsqueeze(2)).chunk(2, dim=2)
        else:  # per sample: [B, 1, 1, D]
            shift, scale = (self.scale_shift_table + temb.unsqueeze(1)).unsqueeze(1).chunk(2, dim=2)
        hidden = (self.norm_out(hidden.float()) * (1 + scale) + shift).type_as(hidden)
        out = self.proj_out(hidden)
        return rearrange(out, "b f (h w) (pt ph pw c) -> b (f pt) c (h ph) (w pw)", h=h, w=w, pt=pt, ph=ph, pw=pw)

    # ------------------------------------------------------------------ public API
    def velocity(
        self,
        x: Tensor,
        sigma: float | Tensor,
        text_embeds: Tensor | TextContext,
        *,
        mode: AttentionMode,
        block_size: int = 1,
        clean: Tensor | None = None,
        clean_sigma: Tensor | None = None,
        window: int | None = None,
    ) -> Tensor:
        r"""Velocity :math:`v_\theta(x_\sigma, \sigma \mid \text{text})` of all frames, in one of the three modes.

        x: ``[B, F, C, H, W]``; sigma: float, ``[B]`` or ``[B, F]``; text_embeds: ``[B, L, D_text]``;
        clean (teacher forcing only): ``[B, F, C, H, W]`` ground-truth context, at level ``clean_sigma``
        (``[B, F]``, default 0). ``window`` (blocks) limits the block-causal visibility like a rolling cache.
        Returns ``[B, F, C, H, W]`` in x's dtype.
        """
        self._check_processors()
        self._check_latents(x)
        if not isinstance(mode, AttentionMode):
            raise TypeError(f"mode must be a cf_ref.masks.AttentionMode, got {mode!r}")
        if (clean is not None) != (mode is AttentionMode.TEACHER_FORCING):
            raise ValueError("clean frames are required in teacher-forcing mode and only there")
        if clean_sigma is not None and clean is None:
            raise ValueError("clean_sigma needs clean frames (teacher forcing)")
        b, f, _, height, width = x.shape
        text = self.text_context(text_embeds)
        if text.batch_size != b:
            raise ValueError(f"text batch {text.batch_size} does not match latent batch {b}")
        t = timestep_from_sigma(frame_levels(sigma, x)).to(x.device)
        positions = torch.arange(f)
        if mode is AttentionMode.TEACHER_FORCING:
            frames, t, positions = self._teacher_forcing_layout(x, t, clean, clean_sigma)
            out = slice(f, 2 * f)
            mask = self._mask(mode, f, block_size, None, self.tokens_per_frame(height, width), x.device)
        else:
            frames, out = x, slice(None)
            mask = None
            if mode is AttentionMode.BLOCK_CAUSAL:
                mask = self._mask(mode, f, block_size, window, self.tokens_per_frame(height, width), x.device)
            elif window is not None:
                raise ValueError("window applies to the block-causal mode only")
        return self.run(frames, t, text, positions, mask, output_frames=out).to(x.dtype)

    @staticmethod
    def _teacher_forcing_layout(
        x: Tensor, t: Tensor, clean: Tensor, clean_sigma: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The sequence ``[clean ; noisy]`` ``[B, 2F, C, H, W]``, its timesteps ``[B, 2F]`` (the clean half at
        ``clean_sigma``, default 0) and RoPE frame positions ``0…F−1`` twice."""
        b, f = x.shape[:2]
        if clean.shape != x.shape:
            raise ValueError(f"clean {tuple(clean.shape)} must have the shape of x {tuple(x.shape)}")
        t_noisy = t if t.ndim == 2 else t[:, None].expand(b, f)
        t_clean = torch.zeros_like(t_noisy)
        if clean_sigma is not None:
            levels = frame_levels(clean_sigma, x)
            t_clean = timestep_from_sigma(levels if levels.ndim == 2 else levels[:, None].expand(b, f))
        positions = torch.arange(f)
        return (
            torch.cat([clean, x], dim=1),
            torch.cat([t_clean.to(t_noisy), t_noisy], dim=1),
            torch.cat([positions, positions]),
        )

    def blockwise(
        self, text_embeds: Tensor | TextContext, block_size: int, window: int | None = None
    ) -> CausalWanBlockwise:
        """A :class:`cf_ref.rollout.BlockwiseModel` over a KV cache for this prompt (cross-attn K/V computed now)."""
        self._check_processors()
        return CausalWanBlockwise(self, self.text_context(text_embeds, precompute_kv=True), block_size, window)

    def guided_blockwise(
        self, cond_embeds: Tensor, uncond_embeds: Tensor, scale: float, block_size: int, window: int | None = None
    ) -> GuidedBlockwise:
        """Classifier-free-guided blockwise model (cond and uncond in one batch; one cache holds both)."""
        if uncond_embeds.shape[0] == 1 and cond_embeds.shape[0] > 1:
            uncond_embeds = uncond_embeds.expand(cond_embeds.shape[0], -1, -1)
        if uncond_embeds.shape[0] != cond_embeds.shape[0]:
            raise ValueError(
                f"uncond batch {uncond_embeds.shape[0]} must be 1 or the cond batch {cond_embeds.shape[0]}"
            )
        if uncond_embeds.shape[1] != cond_embeds.shape[1]:
            raise ValueError("cond and uncond text embeddings must have the same length (pad them)")
        return GuidedBlockwise(self.blockwise(torch.cat([cond_embeds, uncond_embeds]), block_size, window), scale)
