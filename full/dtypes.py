"""Casting a diffusers model to a compute dtype the way ``from_pretrained(torch_dtype=...)`` does."""

from __future__ import annotations

import torch


def cast_keeping_fp32(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast floating parameters and buffers to ``dtype`` except those under the model's
    ``_keep_in_fp32_modules`` (what ``from_pretrained(torch_dtype=dtype)`` does), in place."""
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or [])
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not keep.intersection(name.split(".")):
            tensor.data = tensor.data.to(dtype)
    return model
