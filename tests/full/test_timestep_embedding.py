"""full.timestep_embedding: Wan's float64 timestep sinusoid against an independent numpy float64 computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.embeddings import Timesteps

from full.timestep_embedding import timestep_sinusoid


def numpy_sinusoid(t: np.ndarray, dim: int) -> np.ndarray:
    """Wan's ``sinusoidal_embedding_1d`` in numpy float64: ``[cos(t·ω_i) ; sin(t·ω_i)]``, ω_i = 10000^(-i/h)."""
    half = dim // 2
    angles = np.outer(t.astype(np.float64), 10000.0 ** (-np.arange(half, dtype=np.float64) / half))
    return np.concatenate([np.cos(angles), np.sin(angles)], axis=1)


@pytest.mark.parametrize("dim", [2, 8, 256])
def test_timestep_sinusoid_is_the_float64_formula(dim):
    t = torch.tensor([0.0, 1.0, 249.7, 500.0, 937.5, 1000.0], dtype=torch.float32)
    out = timestep_sinusoid(t, dim)
    assert out.dtype == torch.float64 and out.shape == (6, dim)
    np.testing.assert_allclose(out.numpy(), numpy_sinusoid(t.numpy(), dim), rtol=0, atol=1e-13)
    # diffusers' float32 Timesteps is the same formula, short of float32 rounding of t·ω (t ≤ 1000)
    stock = Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)(t).double()
    assert 0 < float((stock - out).abs().max()) < 1e-4
    with pytest.raises(ValueError, match="even"):
        timestep_sinusoid(t, 7)
