import math

import pytest
import torch

from cf_ref.masks import AttentionMode
from cf_ref.rollout import few_step_rollout
from cf_ref.schedule import Prediction
from toy.networks import FrameNetBlockwise, FrameNetConfig, GroupedLinear, MaskedFrameMLP, sigma_features


def _net(mode, block=1, prediction=Prediction.VELOCITY, seed=0):
    torch.manual_seed(seed)
    return MaskedFrameMLP(FrameNetConfig(6, 2, mode, block_size=block, hidden=16, depth=2, prediction=prediction))


@pytest.mark.parametrize("block", [1, 2, 3])
def test_block_causal_output_ignores_later_blocks_and_bidirectional_does_not(block):
    x, s = torch.randn(3, 6, 2), torch.rand(3, 6)
    x2, s2 = x.clone(), s.clone()
    x2[:, 3:], s2[:, 3:] = torch.randn(3, 3, 2), torch.rand(3, 3)
    causal = _net(AttentionMode.BLOCK_CAUSAL, block)
    a, b = causal(x, s), causal(x2, s2)
    first_changed = 3 // block * block  # the first frame of the block that contains frame 3
    torch.testing.assert_close(a[:, :first_changed], b[:, :first_changed])
    assert not torch.allclose(a[:, first_changed:], b[:, first_changed:])
    bi = _net(AttentionMode.BIDIRECTIONAL)
    assert not torch.allclose(bi(x, s)[:, 0], bi(x2, s2)[:, 0])


def test_teacher_forcing_output_sees_past_context_and_own_block_only():
    net = _net(AttentionMode.TEACHER_FORCING, block=2)
    x, s, ctx = torch.randn(2, 6, 2), torch.rand(2, 6), torch.randn(2, 6, 2)
    base = net(x, s, ctx)
    ctx2 = ctx.clone()
    ctx2[:, 2:4] = torch.randn(2, 2, 2)  # clean block 1: visible to noisy block 2 only
    out = net(x, s, ctx2)
    torch.testing.assert_close(out[:, :4], base[:, :4])
    assert not torch.allclose(out[:, 4:], base[:, 4:])
    x2 = x.clone()
    x2[:, 0] = 5.0  # noisy frame 0: visible to its own block (frames 0, 1) only
    out = net(x2, s, ctx)
    torch.testing.assert_close(out[:, 2:], base[:, 2:])
    with pytest.raises(ValueError, match="clean context"):
        net(x, s)
    with pytest.raises(ValueError, match="takes no clean context"):
        _net(AttentionMode.BIDIRECTIONAL)(x, s, ctx)  # block-causal nets accept it: teacher-forced evaluation


@pytest.mark.parametrize("mode", [AttentionMode.TEACHER_FORCING, AttentionMode.BLOCK_CAUSAL])
def test_cached_rollout_equals_one_parallel_forward_on_the_result(mode):
    """The toy 'KV cache': block-by-block rollout == parallel forward with the generated frames as clean history."""
    net = _net(mode, block=2, prediction=Prediction.X0).double()
    adapter = FrameNetBlockwise(net)
    noise = torch.randn(4, 6, 2, dtype=torch.float64)
    out = few_step_rollout(
        adapter, noise, 2, torch.tensor([1.0], dtype=torch.float64), adapter.new_cache(4, dtype=torch.float64)
    )
    ones = torch.ones(4, 6, dtype=torch.float64)
    if mode is AttentionMode.TEACHER_FORCING:
        parallel = net.predict(noise, ones, context=out.x0, target=Prediction.X0)
        torch.testing.assert_close(parallel, out.x0)
    else:  # block k sees earlier blocks committed at σ = 0 and itself at σ = 1
        for k in range(3):
            tokens, levels = out.x0.clone(), torch.zeros_like(ones)
            tokens[:, 2 * k : 2 * k + 2], levels[:, 2 * k : 2 * k + 2] = noise[:, 2 * k : 2 * k + 2], 1.0
            parallel = net.predict(tokens, levels, target=Prediction.X0)[:, 2 * k : 2 * k + 2]
            torch.testing.assert_close(parallel, out.x0[:, 2 * k : 2 * k + 2])


def test_prediction_conversion_and_sigma_features():
    net = _net(AttentionMode.BLOCK_CAUSAL, prediction=Prediction.X0)
    x, s = torch.randn(2, 6, 2), torch.full((2, 6), 0.5)
    raw = net(x, s)
    torch.testing.assert_close(net.predict(x, s, target=Prediction.X0), raw)
    torch.testing.assert_close(net.predict(x, s), (x - raw) / 0.5)
    assert sigma_features(torch.zeros(3), 4).shape == (3, 9)
    with pytest.raises(ValueError, match="x must be"):
        net(torch.zeros(2, 5, 2), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="does not divide"):
        FrameNetConfig(5, 1, block_size=2)


def test_grouped_linear_is_one_linear_map_per_group_and_sigma_features_values():
    torch.manual_seed(0)
    layer = GroupedLinear(3, 4, 5)
    x = torch.randn(2, 3, 4)
    out = layer(x)
    for gi in range(3):
        torch.testing.assert_close(out[:, gi], torch.nn.functional.linear(x[:, gi], layer.weight[gi].T, layer.bias[gi]))
    torch.testing.assert_close(layer(x[:, 1:], slice(1, 3)), out[:, 1:])
    s = torch.tensor([0.0, 0.25, 1.0])
    feats = sigma_features(s, 2)
    for n, v in enumerate(s.tolist()):
        want = [v, math.sin(math.pi * v), math.sin(2 * math.pi * v), math.cos(math.pi * v), math.cos(2 * math.pi * v)]
        torch.testing.assert_close(feats[n], torch.tensor(want))


def test_network_boundary_errors():
    with pytest.raises(ValueError, match=">= 1"):
        FrameNetConfig(4, 2, hidden=0)
    adapter = FrameNetBlockwise(_net(AttentionMode.TEACHER_FORCING))
    with pytest.raises(ValueError, match="commit at σ = 0"):
        adapter.commit(torch.zeros(1, 1, 2), torch.full((1, 1), 0.1), 0, adapter.new_cache(1))
    frames = adapter.net.config.num_frames
    with pytest.raises(ValueError, match="outside the network's"):
        adapter.velocity(torch.zeros(1, 1, 2), torch.zeros(1, 1), frames, adapter.new_cache(1))
    with pytest.raises(ValueError, match="outside the network's"):
        adapter.commit(torch.zeros(1, 1, 2), torch.zeros(1, 1), -1, adapter.new_cache(1))
    net = _net(AttentionMode.BLOCK_CAUSAL)
    with pytest.raises(ValueError, match="per frame"):
        net(torch.zeros(2, 6, 2), torch.zeros(3))
