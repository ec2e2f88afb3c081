"""What a figure was measured on: CPU model, core and thread counts, GPU, torch version, load.

Benchmarks print :func:`machine_summary` next to every number and store :func:`machine_info` in their JSON,
so a figure in ``docs/benchmarks.md`` always names its machine.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import torch


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """The machine as a JSON-ready dict (``gpu`` is ``"none"`` without CUDA; ``load_average`` is 1/5/15 min)."""
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
        "torch": torch.__version__,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def machine_summary() -> str:
    """One line for a benchmark's printout, e.g. ``CPU AMD EPYC …, 2 logical CPUs, 1 torch thread(s), GPU none, torch 2.13.0``."""
    m = machine_info()
    load = "" if m["load_average"] is None else f", load average {m['load_average'][0]:.1f}"
    return (
        f"CPU {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['torch_threads']} torch thread(s), "
        f"GPU {m['gpu']}, torch {m['torch']}{load}"
    )


def cuda_unavailable_reason() -> str:
    """Why CUDA cannot be used here, in words (a CPU-only build, or no GPU visible)."""
    if torch.version.cuda is None:
        return "this torch build has no CUDA support (a CPU-only build); use --device cpu"
    return "no CUDA device is visible (check CUDA_VISIBLE_DEVICES and the driver); use --device cpu"
