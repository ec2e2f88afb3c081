"""Exact reference velocities of toy/velocity_errors.py against independent computations."""

import torch

from cf_ref.masks import AttentionMode
from toy.data import shared_mode_mixture
from toy.networks import FrameNetConfig, MaskedFrameMLP
from toy.teachers import BidirectionalTeacher
from toy.velocity_errors import (
    History,
    ar_velocity,
    ar_velocity_error,
    bidirectional_velocity_error,
    block_causal_velocity,
)

DATA = shared_mode_mixture(num_frames=3, dim=2, num_modes=3)


def _inputs(n: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x0 = DATA.sample(n, g)[0]
    x = torch.randn(n, 3, 2, generator=g, dtype=torch.float64)
    sigma = torch.rand(n, 3, generator=g, dtype=torch.float64)
    return x0, x, sigma


def test_block_causal_velocity_with_clean_history_is_the_ar_teacher():
    """Block j with clean history (σ = 0 on earlier frames) == the exact AR teacher conditioned on that context."""
    x0, x, sigma = _inputs()
    expected = ar_velocity(DATA, x, sigma, x0)
    for j in range(3):
        view, levels = x0.clone(), torch.zeros_like(sigma)
        view[:, j], levels[:, j] = x[:, j], sigma[:, j]
        torch.testing.assert_close(block_causal_velocity(DATA, view, levels)[:, j], expected[:, j])


def test_block_causal_velocity_of_last_frame_at_common_level_is_bidirectional():
    """At one shared level the last frame conditions on every frame: the joint (bidirectional) velocity."""
    _, x, sigma = _inputs()
    common = sigma[:, :1].expand(-1, 3)
    joint = BidirectionalTeacher(DATA).velocity(x, common)
    torch.testing.assert_close(block_causal_velocity(DATA, x, common)[:, -1], joint[:, -1])


def test_velocity_errors_are_relative_and_finite():
    torch.manual_seed(0)
    causal = MaskedFrameMLP(FrameNetConfig(3, 2, AttentionMode.BLOCK_CAUSAL, hidden=8, depth=1))
    bidirectional = MaskedFrameMLP(FrameNetConfig(3, 2, AttentionMode.BIDIRECTIONAL, hidden=8, depth=1))
    for layer in bidirectional.layers:  # a zero network has relative error exactly 1
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    assert abs(bidirectional_velocity_error(bidirectional, DATA, 64, torch.Generator().manual_seed(0)) - 1) < 1e-6
    for history in History:
        err = ar_velocity_error(causal, DATA, history, 64, torch.Generator().manual_seed(0))
        assert 0 < err < float("inf")
