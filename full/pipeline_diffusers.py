r"""``CausalForcingPipeline``: the few-step causal student as a diffusers ``DiffusionPipeline``.

Components as in diffusers' ``WanPipeline`` (``tokenizer``, ``text_encoder``, ``vae``, ``transformer``), no
scheduler: the student samples block by block on its few-step σ list (:mod:`full.sampler`), which no
diffusers scheduler produces. The sampling settings that belong to a trained model live in the pipeline's
config (``model_index.json``): ``block_size`` (3 chunk-wise, 1 frame-wise), ``shift``, ``context_noise``,
``max_sequence_length`` and the default video size.

::

    pipe = CausalForcingPipeline.from_pretrained("saved_pipeline")            # a folder save_pretrained wrote
    pipe = CausalForcingPipeline.from_pretrained(                             # a Wan2.1 diffusers folder + a student
        "Wan2.1-T2V-1.3B-Diffusers", transformer=CausalWanTransformer3DModel.from_pretrained("cf_chunkwise"))
    pipe = CausalForcingPipeline.from_preset("tiny")                          # offline, random tiny models
    video = pipe("a cat surfing", num_frames=81, num_inference_steps=4,
                 generator=torch.Generator().manual_seed(0)).frames[0]       # np [F, H, W, 3] in [0, 1]
    for block in pipe.stream("a cat surfing", generator=...):              # full.stream.VideoStream
        show(block.frames_uint8())

Conventions follow ``diffusers/pipelines/wan/pipeline_wan.py`` (0.42): ``num_frames`` counts video frames
(``1 + 4k``), ``output_type`` ``"np"`` (``[B, F, H, W, 3]`` in [0, 1]), ``"pt"`` (``[B, F, 3, H, W]``),
``"pil"`` (a list of lists of PIL images) or ``"latent"`` (``[B, C, F, h, w]``, normalised), the result a
``WanPipelineOutput`` with ``.frames`` (or a tuple with ``return_dict=False``); ``generator`` one
``torch.Generator``. With the same generator seed the frames equal :func:`full.sampler.generate`'s.
``enable_model_cpu_offload`` applies to ``__call__`` (text encoder → DiT → VAE, each moved to the device when
used, as in diffusers): the sampler calls the DiT and the VAE decoder by their sub-modules, not ``forward``,
so the pipeline runs each model's accelerate hook itself before using it. A stream needs the DiT and the VAE
on the device for every block, so ``stream()`` refuses offload hooks.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from diffusers import DiffusionPipeline, WanTransformer3DModel
from diffusers.pipelines.wan.pipeline_output import WanPipelineOutput
from diffusers.video_processor import VideoProcessor
from einops import rearrange

from cf_ref.schedule import DEFAULT_SHIFT
from full.components import WanComponents
from full.model import CausalWanTransformer3DModel
from full.sampler import NoiseSource, SampleConfig, generate
from full.stream import VideoStream
from full.text import WAN_TEXT_LENGTH, TextEncoder
from full.video import decode_latents

OUTPUT_TYPES = ("np", "pt", "pil", "latent")


def causal_transformer(transformer: WanTransformer3DModel) -> CausalWanTransformer3DModel:
    """A stock ``WanTransformer3DModel`` (as a Wan2.1 folder loads it) → the causal model with the same weights
    (same parameter names; the tensors are reused, not copied)."""
    if isinstance(transformer, CausalWanTransformer3DModel):
        return transformer
    if not isinstance(transformer, WanTransformer3DModel):
        raise TypeError(f"transformer must be a WanTransformer3DModel, got {type(transformer).__name__}")
    from accelerate import init_empty_weights

    with init_empty_weights():
        causal = CausalWanTransformer3DModel.from_config(transformer.config)
    causal.load_state_dict(transformer.state_dict(), assign=True)
    return causal.to(transformer.device).eval()


def _onload(module: torch.nn.Module) -> None:
    """Run a model's accelerate offload hook (``enable_model_cpu_offload``) as its ``forward`` would."""
    hook = getattr(module, "_hf_hook", None)
    if hook is not None:
        hook.pre_forward(module)


class CausalForcingPipeline(DiffusionPipeline):
    r"""Few-step autoregressive text-to-video with a KV cache (Causal Forcing / Self Forcing students)."""

    model_cpu_offload_seq = "text_encoder->transformer->vae"

    def __init__(
        self,
        tokenizer,
        text_encoder,
        vae,
        transformer: WanTransformer3DModel,
        block_size: int = 3,
        shift: float = DEFAULT_SHIFT,
        context_noise: float = 0.0,
        max_sequence_length: int = WAN_TEXT_LENGTH,
        default_height: int = 480,
        default_width: int = 832,
    ):
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=causal_transformer(transformer)
        )
        # recorded as the stock class: same config and weights, so the folder loads anywhere (stock diffusers
        # too), and loading hands a WanTransformer3DModel to __init__, which makes it causal without copying
        self.register_to_config(transformer=("diffusers", "WanTransformer3DModel"))
        self.register_to_config(
            block_size=block_size,
            shift=shift,
            context_noise=context_noise,
            max_sequence_length=max_sequence_length,
            default_height=default_height,
            default_width=default_width,
        )
        self.vae_scale_factor_temporal = self.vae.config.scale_factor_temporal
        self.vae_scale_factor_spatial = self.vae.config.scale_factor_spatial
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(cls, name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        """A preset by name (:data:`full.presets.PRESETS`, e.g. ``"tiny"``), offline."""
        from full.components import load_preset

        components, preset = load_preset(name, device, dtype)
        pipe = cls.from_components(components, preset.block_size, preset.height, preset.width)
        if preset.shift is not None:  # the σ list the preset's student was trained on
            pipe.register_to_config(shift=preset.shift)
        return pipe

    @classmethod
    def from_components(cls, components: WanComponents, block_size: int = 3, height: int = 480, width: int = 832):
        """Wrap already loaded models (:func:`full.components.load_components`)."""
        text = components.text
        return cls(
            text.tokenizer,
            text.model,
            components.vae,
            components.transformer,
            block_size=block_size,
            max_sequence_length=text.max_length,
            default_height=height,
            default_width=width,
        )

    def components_for_sampling(self) -> WanComponents:
        """The models as :mod:`full.sampler` takes them."""
        length = min(self.config.max_sequence_length, int(self.tokenizer.model_max_length))
        return WanComponents(self.transformer, self.vae, TextEncoder(self.tokenizer, self.text_encoder, length))

    # ------------------------------------------------------------------ inputs
    def sample_config(
        self,
        num_frames: int,
        num_inference_steps: int,
        height: int | None,
        width: int | None,
        first_block_steps: int | None = None,
        guidance_scale: float = 1.0,
        window: int | None = None,
        sink: bool = False,
    ) -> SampleConfig:
        """Video-frame arguments (diffusers' convention) → :class:`full.sampler.SampleConfig` (latent frames)."""
        t = self.vae_scale_factor_temporal
        if num_frames < 1 or (num_frames - 1) % t:
            raise ValueError(f"num_frames must be 1 + {t}k video frames (e.g. 81), got {num_frames}")
        latent_frames = (num_frames - 1) // t + 1
        b = self.config.block_size
        if latent_frames % b:
            lo = max(b, latent_frames - latent_frames % b)
            raise ValueError(
                f"num_frames {num_frames} gives {latent_frames} latent frames, not a multiple of the block size {b}; "
                f"use {t * (lo - 1) + 1} or {t * (lo + b - 1) + 1}"
            )
        config = SampleConfig(
            steps=num_inference_steps,
            first_block_steps=first_block_steps,
            block_size=b,
            num_frames=latent_frames,
            height=height or self.config.default_height,
            width=width or self.config.default_width,
            shift=self.config.shift,
            context_noise=self.config.context_noise,
            window=window,
            sink=sink,
            guidance_scale=guidance_scale,
        )
        config.validate()
        return config

    def _t5(self, prompts: list[str], num_videos_per_prompt: int) -> torch.Tensor:
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompt must be a string or a non-empty list of strings")
        _onload(self.text_encoder)
        embeds = self.components_for_sampling().text.encode(prompts)
        return embeds.repeat_interleave(num_videos_per_prompt, dim=0)

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None = None,
        do_classifier_free_guidance: bool = False,
        num_videos_per_prompt: int = 1,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """UMT5 embeddings ``[B·n, L, D]`` of the prompts (and of the negative prompts with CFG), as
        ``WanPipeline.encode_prompt`` computes them (the length is the pipeline's ``max_sequence_length``). Given
        ``prompt_embeds`` are used as they are; a missing negative prompt is the empty string."""
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("give exactly one of prompt or prompt_embeds")
        n = num_videos_per_prompt
        if prompt_embeds is None:
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            prompt_embeds, batch = self._t5(prompts, n), len(prompts)
        else:
            batch, n = prompt_embeds.shape[0], 1
        if not do_classifier_free_guidance or negative_prompt_embeds is not None:
            return prompt_embeds, negative_prompt_embeds
        negative = "" if negative_prompt is None else negative_prompt
        negatives = [negative] * batch if isinstance(negative, str) else list(negative)
        if len(negatives) != batch:
            raise ValueError(f"{len(negatives)} negative prompts for {batch} prompts")
        return prompt_embeds, self._t5(negatives, n)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int = 81,
        num_inference_steps: int = 4,
        first_block_steps: int | None = None,
        guidance_scale: float = 1.0,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        window: int | None = None,
        sink: bool = False,
    ) -> WanPipelineOutput | tuple:
        """Generate videos. Arguments as ``WanPipeline.__call__`` where they exist; ``num_inference_steps`` is
        the few-step count per block (1, 2, 4), ``first_block_steps`` the first block's (Causal Forcing++: 4),
        ``guidance_scale`` 1 = no CFG (the distilled students), ``window`` / ``sink`` the rolling KV cache."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}; got {output_type!r}")
        config = self.sample_config(
            num_frames, num_inference_steps, height, width, first_block_steps, guidance_scale, window, sink
        )
        cond, negative = self.encode_prompt(
            prompt, negative_prompt, guidance_scale != 1, num_videos_per_prompt, prompt_embeds, negative_prompt_embeds
        )
        _onload(self.transformer)
        components = self.components_for_sampling()
        device = self.transformer.device
        generator = (
            generator if generator is not None else torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        )
        cond = cond.to(device=device, dtype=self.transformer.compute_dtype)
        negative = None if negative is None else negative.to(device=device, dtype=cond.dtype)
        result = generate(
            components, cond, config, decode=False, negative_embeds=negative, noise=NoiseSource(generator, device)
        )
        latents = rearrange(result.latents, "b f c h w -> b c f h w")
        if output_type == "latent":
            video = latents
        else:
            _onload(self.vae)
            video = rearrange(decode_latents(self.vae, result.latents), "b f c h w -> b c f h w")
            video = self.video_processor.postprocess_video(video.float(), output_type=output_type)
        self.maybe_free_model_hooks()
        return WanPipelineOutput(frames=video) if return_dict else (video,)

    def stream(
        self,
        prompt: str,
        *,
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 4,
        first_block_steps: int | None = None,
        guidance_scale: float = 1.0,
        generator: torch.Generator | None = None,
        window: int | None = None,
        sink: bool = False,
        recache: bool = False,
        max_blocks: int | None = None,
    ) -> VideoStream:
        """The streaming entry point: a :class:`full.stream.VideoStream` (iterate for decoded blocks;
        ``set_prompt`` / ``set_steps`` / ``reset`` between blocks). Unbounded unless ``max_blocks``."""
        config = self.sample_config(
            1 + self.vae_scale_factor_temporal * (self.config.block_size - 1),
            num_inference_steps,
            height,
            width,
            first_block_steps,
            guidance_scale,
            window,
            sink,
        )
        if any(hasattr(m, "_hf_hook") for m in (self.transformer, self.vae)):
            raise ValueError(
                "a stream keeps the DiT and the VAE on the device for every block; model CPU offload applies to "
                "__call__ only: call pipe.remove_all_hooks() and pipe.to(device) before stream()"
            )
        return VideoStream(
            self.components_for_sampling(),
            prompt,
            replace(config, num_frames=config.block_size),
            negative_prompt=negative_prompt,
            max_blocks=max_blocks,
            recache=recache,
            generator=generator,
        )
