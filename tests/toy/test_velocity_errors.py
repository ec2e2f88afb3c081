"""Exact reference velocities of toy/velocity_errors.py against independent computations."""

import pytest
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


class ExactNetwork(MaskedFrameMLP):
    """A network whose prediction is an exact velocity (evaluated in float64 on its float32 inputs)."""

    def __init__(self, config, exact):
        super().__init__(config)
        self.exact = exact

    def predict(self, x, sigma, context=None):
        ctx = None if context is None else context.double()
        return self.exact(x.double(), sigma.double(), ctx).float()


def test_errors_vanish_for_the_exact_velocity_and_not_for_the_wrong_one():
    """Each error compares against its own reference: 0 (float32 rounding) for it, clearly > 0 for another."""
    rng = torch.Generator
    bi = FrameNetConfig(3, 2, AttentionMode.BIDIRECTIONAL, hidden=4, depth=1)
    causal = FrameNetConfig(3, 2, AttentionMode.BLOCK_CAUSAL, hidden=4, depth=1)
    joint = ExactNetwork(bi, lambda x, s, c: BidirectionalTeacher(DATA).velocity(x, s))
    assert bidirectional_velocity_error(joint, DATA, 64, rng().manual_seed(1)) < 1e-5
    ar = ExactNetwork(causal, lambda x, s, c: ar_velocity(DATA, x, s, c))
    assert ar_velocity_error(ar, DATA, History.CLEAN, 64, rng().manual_seed(2)) < 1e-5
    noisy = ExactNetwork(causal, lambda x, s, c: block_causal_velocity(DATA, x, s))
    assert ar_velocity_error(noisy, DATA, History.NOISY, 64, rng().manual_seed(3)) < 1e-5
    assert ar_velocity_error(noisy, DATA, History.CLEAN, 64, rng().manual_seed(2)) > 0.05  # ignores clean history
    wrong = ExactNetwork(causal, lambda x, s, c: BidirectionalTeacher(DATA).velocity(x, s))
    assert ar_velocity_error(wrong, DATA, History.NOISY, 64, rng().manual_seed(3)) > 0.05  # sees the future


def test_history_must_be_a_member():
    net = MaskedFrameMLP(FrameNetConfig(3, 2, AttentionMode.BLOCK_CAUSAL, hidden=4, depth=1))
    with pytest.raises(ValueError, match="History member"):
        ar_velocity_error(net, DATA, "clean", 8, torch.Generator().manual_seed(0))
