r"""Roofline time of a step on a named GPU, and the sampler's ideal chunk time and frame rate.

.. math::  t = \max\Big(\frac{\text{FLOPs}}{\text{peak}_{bf16}\cdot\text{MFU}},\;
                        \frac{\text{bytes}}{\text{HBM bandwidth}}\Big)

``MFU`` (model FLOPs utilisation) is an assumption the plan prints beside every time; ``bytes`` is the unfused
traffic of :class:`full.plan.flops.ByteCounter` (an upper bound), so a memory-bound verdict is pessimistic.
"""

from __future__ import annotations

from dataclasses import dataclass

from full.plan.flops import OpCount
from full.plan.gpus import GPU

DEFAULT_MFU = 0.4  # an assumption, printed with every time: large bf16 DiT training typically reaches 0.3-0.5


@dataclass(frozen=True)
class RooflineTime:
    """``seconds`` = max(``compute_s``, ``memory_s``) at ``mfu`` on ``gpu``."""

    seconds: float
    compute_s: float
    memory_s: float
    mfu: float
    gpu: str

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"


def roofline(ops: OpCount, gpu: GPU, mfu: float = DEFAULT_MFU) -> RooflineTime:
    """The module doc's time of ``ops`` on ``gpu``."""
    if not 0.0 < mfu <= 1.0:
        raise ValueError(f"mfu must lie in (0, 1], got {mfu}")
    compute = ops.flops / (gpu.bf16_flops * mfu)
    memory = ops.bytes / gpu.bandwidth
    return RooflineTime(max(compute, memory), compute, memory, mfu, gpu.name)


def video_frames(latent_frames: int, temporal_factor: int = 4) -> int:
    """Frames the Wan VAE decodes from ``latent_frames`` latents: the first alone, then ``temporal_factor`` each."""
    return 1 + temporal_factor * (latent_frames - 1)


@dataclass(frozen=True)
class ChunkRate:
    """Sampling: FLOPs per chunk (its denoising steps and its cache pass, averaged over the video's chunks), the
    ideal time per chunk and the frame rate it allows (decoded frames over the rollout's time, DiT only)."""

    chunks: int
    flops_per_chunk: float
    time_per_chunk: RooflineTime
    fps: float


def chunk_rate(rollout: OpCount, latent_frames: int, block_size: int, gpu: GPU, mfu: float = DEFAULT_MFU) -> ChunkRate:
    """:class:`ChunkRate` of a whole-video rollout ``rollout`` of ``latent_frames`` in chunks of ``block_size``."""
    chunks = latent_frames // block_size
    per_chunk = OpCount(rollout.flops // chunks, rollout.bytes // chunks)
    t = roofline(per_chunk, gpu, mfu)
    return ChunkRate(chunks, per_chunk.flops, t, video_frames(latent_frames) / (chunks * t.seconds))
