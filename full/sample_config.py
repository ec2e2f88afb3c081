"""What a sampled video is made with and of: its settings (:class:`SampleConfig`), its two noise streams
(:class:`NoiseSource`) and the pieces it is emitted in (:class:`Block`) — :mod:`full.sampler` makes them.

Noise (:class:`NoiseSource`): block j's initial noise ε_j ``[B, b, C, h, w]`` is the j-th draw of one
``torch.Generator`` (on its own device, CPU by default, so the initial noise does not depend on the model's
device), the re-noising inside the rollout comes from a generator on the model's device seeded by one draw of
the first (so with more than one step a CUDA video differs from the CPU one, as CUDA and CPU draws differ). A longer video
therefore starts with exactly the blocks of a shorter one with the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from cf_ref.errors import InvalidValue
from cf_ref.schedule import DEFAULT_SHIFT, FewStepSchedule
from full.cache_choice import CACHE_KINDS
from full.sink import SinkPositions


@dataclass(frozen=True)
class SampleConfig:
    """Sampling settings (defaults: the published chunk-wise 4-step setting at 480×832, 81 video frames)."""

    steps: int = 4
    first_block_steps: int | None = None  # e.g. 4 for the Causal Forcing++ 1-/2-step models
    block_size: int = 3
    num_frames: int = 21  # latent frames (81 video frames); a stream ignores it
    height: int = 480  # pixels
    width: int = 832
    shift: float = DEFAULT_SHIFT
    context_noise: float = 0.0  # σ of the cache pass (0 = clean)
    window: int | None = None  # rolling KV cache, in blocks (None = whole history)
    sink: bool = False  # keep the first block in the rolling cache (attention sink)
    sink_positions: str = "fixed"  # fixed | adjacent: the sink's RoPE positions once the window moved (full.sink)
    guidance_scale: float = 1.0  # CFG with a negative prompt when != 1 (the distilled students use none)
    seed: int = 0
    cache: str = "dynamic"  # KV cache: "dynamic" (full.cache) or "static" (full.static_cache; fixed shapes)
    compile: bool = False  # torch.compile the transformer blocks (full.graphs.compile_blocks)
    cuda_graphs: bool = False  # replay each block's passes as CUDA graphs (static cache, CUDA only)

    def validate(self) -> None:
        if self.steps < 1 or (self.first_block_steps is not None and self.first_block_steps < 1):
            raise InvalidValue(f"steps must be >= 1, got {self.steps} / first block {self.first_block_steps}")
        if self.block_size < 1 or self.num_frames < 1:
            raise InvalidValue(f"block size and frames must be >= 1, got {self.block_size}, {self.num_frames}")
        if self.num_frames % self.block_size:
            raise InvalidValue(
                f"block size {self.block_size} does not divide the number of latent frames {self.num_frames}; "
                f"use a multiple of {self.block_size} (21 latent frames = 81 video frames)"
            )
        if not 0.0 <= self.context_noise < 1.0:
            raise InvalidValue(f"context_noise must be in [0, 1), got {self.context_noise}")
        if self.window is not None and self.window < 1:
            raise InvalidValue(f"window must be >= 1 block or None, got {self.window}")
        if self.sink and self.window is None:
            raise InvalidValue("an attention sink needs a rolling cache: set a window")
        positions = [p.value for p in SinkPositions]
        if self.sink_positions not in positions:
            raise InvalidValue(f"sink_positions must be one of {', '.join(positions)}, got {self.sink_positions!r}")
        if self.shift <= 0:
            raise InvalidValue(f"shift must be > 0, got {self.shift}")
        if self.cache not in CACHE_KINDS:
            raise InvalidValue(f"cache must be one of {', '.join(CACHE_KINDS)}, got {self.cache!r}")
        if self.cuda_graphs and self.cache != "static":
            raise InvalidValue("CUDA graphs need the static KV cache: set cache='static' (--cache static)")
        if self.sink and self.sink_positions != "fixed" and self.cache != "dynamic":
            raise InvalidValue(f"sink_positions {self.sink_positions!r} needs the dynamic KV cache (--cache dynamic)")

    def sigmas(self, steps: int | None = None) -> Tensor:
        """The few-step σ list (float64) for ``steps`` (default ``self.steps``): the uniform K-step schedule."""
        return FewStepSchedule.uniform(steps or self.steps, self.shift).student_sigmas()


class NoiseSource:
    """The two noise streams of a video: ``initial`` (any device; block j's ε is its j-th draw) and ``renoise``
    (the model's device, seeded by one draw of ``initial``; used inside the rollout and for context noise)."""

    def __init__(self, generator: torch.Generator, device: str | torch.device):
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be one torch.Generator, got {type(generator).__name__}")
        self.initial = generator
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        self.renoise = torch.Generator(device=device).manual_seed(seed)

    @classmethod
    def from_seed(cls, seed: int, device: str | torch.device) -> NoiseSource:
        """``NoiseSource(torch.Generator().manual_seed(seed), device)``."""
        return cls(torch.Generator().manual_seed(seed), device)

    def block(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        """The next block's initial noise ``shape`` (float32) on ``device``."""
        return torch.randn(shape, generator=self.initial, device=self.initial.device).to(device)


@dataclass
class Block:
    """One emitted piece of video. latents: ``[B, n, C, h, w]`` normalised; video: ``[B, m, 3, H, W]`` in
    [-1, 1] (None without decoding; m = 1 + 4(n-1) for the video's first piece, 4n after); ``index``: order
    of emission (0 = first); ``start_frame``: the latent frame of the video where it starts (RoPE positions
    equal it until a re-anchoring); ``prefill``: an image committed as given, not generated; timings in
    seconds."""

    index: int
    start_frame: int
    latents: Tensor
    video: Tensor | None
    prefill: bool = False
    timings: dict[str, float] = field(default_factory=dict)
