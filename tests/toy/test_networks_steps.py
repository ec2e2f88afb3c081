"""toy.networks' student parameterisation: the level-modulated affine skip against the Gaussian conditional
expectation's closed form (a least-squares fit of the skip on simulated ODE pairs recovers
toy.closed_form.causal_regression_matrix at every level), and the steep own-state features by hand."""

import math

import pytest
import torch

from cf_ref.masks import AttentionMode
from cf_ref.schedule import few_step_sigmas, uniform_few_step_timesteps
from toy import closed_form
from toy.data import ar1_gaussian
from toy.networks import FrameNetConfig, LevelAffineSkip, MaskedFrameMLP, step_features


def _joint_states(data, sigma: float, eps):
    """States of the joint PF-ODE at σ, x_σ = (1-σ)μ + C_σ^{1/2}ε, and the end points x0 = μ + Σ^{1/2}ε (flattened)."""
    mean = data.mean().reshape(-1)
    flat = eps.reshape(eps.shape[0], -1)
    state = (1 - sigma) * mean + flat @ closed_form.symmetric_sqrt(closed_form.marginal_covariance(data, sigma))
    end = mean + flat @ closed_form.symmetric_sqrt(data.covariance())
    return data.unflatten(state), data.unflatten(end)


def test_least_squares_affine_skip_is_the_gaussian_conditional_expectation_at_every_level():
    data = ar1_gaussian(4, 2, rho=0.9)
    sigmas = few_step_sigmas(uniform_few_step_timesteps(4), shift=2.0).tolist()  # K = 4 levels, 6 basis functions
    net = MaskedFrameMLP(FrameNetConfig(4, 2, AttentionMode.BLOCK_CAUSAL, hidden=8, depth=2, affine_skip=True))
    net = net.double()
    with torch.no_grad():  # the MLP contributes nothing: the output is the skip alone
        net.layers[-1].weight.zero_()
        net.layers[-1].bias.zero_()
    gen = torch.Generator().manual_seed(0)
    feats, targets = [], []
    for sigma in sigmas:
        state, end = _joint_states(data, sigma, torch.randn(16_000, 4, 2, generator=gen, dtype=torch.float64))
        z = (state[:, None] * net.visibility[None, :, :, None]).flatten(2)  # [B, F, F·d] visible token values
        feats.append(net.skip.features(z, torch.full(z.shape[:2], sigma, dtype=torch.float64)))
        targets.append(end)
    feats, targets = torch.cat(feats), torch.cat(targets)  # [B·K, F, P], [B·K, F, d]
    with torch.no_grad():
        for i in range(4):  # each frame's skip is an ordinary least-squares problem
            weight = torch.linalg.lstsq(feats[:, i], targets[:, i], driver="gelsd").solution  # [P, d]
            net.skip.linear.weight[i] = weight
    mean = data.mean().reshape(-1)

    def closed(sigma_state: float, sigma_map: float, state):  # the CE regression of level sigma_map
        a = closed_form.causal_regression_matrix(data, sigma_map)
        return mean + (state.reshape(len(state), -1) - (1 - sigma_map) * mean) @ a.T

    for k, sigma in enumerate(sigmas):
        state, _ = _joint_states(data, sigma, torch.randn(1024, 4, 2, generator=gen, dtype=torch.float64))
        out = net(state, torch.full((1024, 4), sigma, dtype=torch.float64)).reshape(1024, -1)
        rms = (out - closed(sigma, sigma, state)).pow(2).mean().sqrt()
        other = sigmas[k - 1] if k else sigmas[1]  # the neighbouring level's regression: the test can tell them apart
        assert rms < 0.03 < (out - closed(sigma, other, state)).pow(2).mean().sqrt()


def test_affine_skip_starts_at_zero_and_keeps_causality():
    torch.manual_seed(0)
    config = FrameNetConfig(4, 2, hidden=8, depth=2)
    plain = MaskedFrameMLP(config)
    torch.manual_seed(0)
    rich = MaskedFrameMLP(FrameNetConfig(4, 2, hidden=8, depth=2, affine_skip=True, own_step_scales=(2.0, 64.0)))
    assert isinstance(rich.skip, LevelAffineSkip) and not rich.skip.linear.weight.any()
    assert rich.layers[0].weight.shape[1] == plain.layers[0].weight.shape[1] + 2 * 4  # 2 scales × 4 directions
    x, s = torch.randn(3, 4, 2), torch.rand(3, 4)
    x2 = x.clone()
    x2[:, 2:] = torch.randn(3, 2, 2)
    with torch.no_grad():
        rich.skip.linear.weight.normal_()
    torch.testing.assert_close(rich(x, s)[:, :2], rich(x2, s)[:, :2])
    assert not torch.allclose(rich(x, s)[:, 2:], rich(x2, s)[:, 2:])
    tf = MaskedFrameMLP(FrameNetConfig(4, 2, AttentionMode.TEACHER_FORCING, hidden=8, depth=2, affine_skip=True))
    ctx, ctx2 = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    with torch.no_grad():
        tf.skip.linear.weight.normal_()
    ctx2[:, :2] = ctx[:, :2]  # clean frames 0, 1 shared: noisy frames 0..2 read only those
    torch.testing.assert_close(tf(x, s, ctx)[:, :3], tf(x, s, ctx2)[:, :3])


def test_step_features_by_hand_and_bad_scales_refused():
    x = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    r = 1 / math.sqrt(2)
    projections = (0.3, -1.2, r * (0.3 - 1.2), r * (0.3 + 1.2))  # e1, e2, (e1 + e2)/√2, (e1 - e2)/√2
    by_hand = [math.tanh(a * p) for a in (2.0, 50.0) for p in projections]
    torch.testing.assert_close(step_features(x, (2.0, 50.0)), torch.tensor([by_hand], dtype=torch.float64))
    assert step_features(x, ()).shape == (1, 0)
    with pytest.raises(ValueError, match="own_step_scales must be positive"):
        FrameNetConfig(3, 1, own_step_scales=(1.0, 0.0))
