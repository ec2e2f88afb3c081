"""Named GPUs for the plan's roofline: dense bf16 tensor-core peak, HBM bandwidth and memory, per GPU.

Figures are the vendors' spec sheets, per GPU, *dense* (the sheets print the 2:4-sparse figure first; dense is
half of it). Memory is in bytes as the vendor counts them (80 GB = 80·10⁹ B ≈ 74.5 GiB).
"""

from __future__ import annotations

from dataclasses import dataclass

from cf_ref.errors import InvalidValue


@dataclass(frozen=True)
class GPU:
    """One accelerator: ``bf16_flops`` (dense FLOP/s), ``bandwidth`` (HBM B/s), ``memory`` (B)."""

    name: str
    bf16_flops: float
    bandwidth: float
    memory: float

    @property
    def memory_gib(self) -> float:
        return self.memory / 2**30


GPUS: dict[str, GPU] = {
    # NVIDIA H100 Tensor Core GPU datasheet, H100 SXM column: BF16 Tensor Core 1,979 TFLOPS with sparsity
    # (989.5 dense), GPU memory 80 GB, bandwidth 3.35 TB/s.
    "h100-sxm-80gb": GPU("H100 SXM 80 GB", 989.5e12, 3.35e12, 80e9),
    # NVIDIA H200 Tensor Core GPU datasheet, H200 SXM column: BF16 Tensor Core 1,979 TFLOPS with sparsity
    # (989.5 dense), GPU memory 141 GB, bandwidth 4.8 TB/s.
    "h200": GPU("H200 SXM 141 GB", 989.5e12, 4.8e12, 141e9),
    # NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM column: BF16 Tensor Core 624 TFLOPS with sparsity
    # (312 dense), GPU memory 80 GB HBM2e, bandwidth 2,039 GB/s.
    "a100-80gb": GPU("A100 SXM 80 GB", 312e12, 2.039e12, 80e9),
    # NVIDIA DGX B200 datasheet (8 GPUs): 1,440 GB HBM3e, 64 TB/s; NVIDIA HGX B200 spec: FP16/BF16 Tensor Core
    # 4.5 PFLOPS with sparsity per GPU (2.25 dense). Per GPU: 180 GB, 8 TB/s.
    "b200": GPU("B200 180 GB", 2.25e15, 8.0e12, 180e9),
}


class UnknownGPU(InvalidValue):
    """A GPU name the plan has no figures for."""


def gpu(name: str) -> GPU:
    """The named GPU (case-insensitive; spaces and underscores read as dashes); an unknown name lists the known."""
    key = name.strip().lower().replace(" ", "-").replace("_", "-")
    aliases = {"h100": "h100-sxm-80gb", "h100-sxm": "h100-sxm-80gb", "a100": "a100-80gb", "h200-sxm": "h200"}
    key = aliases.get(key, key)
    if key not in GPUS:
        raise UnknownGPU(f"unknown GPU {name!r}; known: {', '.join(GPUS)}")
    return GPUS[key]
