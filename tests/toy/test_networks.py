import math

import pytest
import torch
from einops import rearrange

from cf_ref.granularity import block_ids
from cf_ref.masks import AttentionMode
from cf_ref.rollout import few_step_rollout
from cf_ref.schedule import Prediction
from toy.networks import (
    FrameNetBlockwise,
    FrameNetConfig,
    GatedExpertsHead,
    GroupedLinear,
    MaskedFrameMLP,
    feature_directions,
    sigma_features,
    state_features,
    with_mode,
)


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


def _net4(mode: AttentionMode, block_size: int, seed: int = 0) -> MaskedFrameMLP:
    """A 4-frame, 2-dim network (the teacher-forced evaluation tests)."""
    torch.manual_seed(seed)
    return MaskedFrameMLP(FrameNetConfig(num_frames=4, dim=2, mode=mode, block_size=block_size, hidden=16, depth=2))


@pytest.mark.parametrize("block_size", [1, 2])
def test_teacher_forced_equals_blockwise_cache(block_size):
    """net(x, σ, context=c) for block j == the block-by-block adapter with c's earlier blocks committed clean."""
    net = _net4(AttentionMode.BLOCK_CAUSAL, block_size)
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(3, 4, 2, generator=g), torch.randn(3, 4, 2, generator=g)
    sigma = torch.rand(3, 4, generator=g)
    forced = net(x, sigma, context=ctx)
    model = FrameNetBlockwise(net)
    cache = model.new_cache(3)
    for j in range(4 // block_size):
        span = slice(j * block_size, (j + 1) * block_size)
        blockwise = model.velocity(x[:, span], sigma[:, span], j, cache)
        torch.testing.assert_close(forced[:, span], blockwise)
        cache = model.commit(ctx[:, span], torch.zeros_like(sigma[:, span]), j, cache)


@pytest.mark.parametrize("block_size", [1, 2])
def test_teacher_forced_equals_teacher_forcing_layout(block_size):
    """Independent check of the fold: a TEACHER_FORCING net whose first-layer weights are copied into the
    block-causal slots (clean slot for earlier blocks, noisy slot for the own block) gives the same output."""
    tf = _net4(AttentionMode.TEACHER_FORCING, block_size)
    bc = _net4(AttentionMode.BLOCK_CAUSAL, block_size, seed=1)
    f, token = 4, tf.layers[0].weight.shape[1] // 8
    w_tf = rearrange(tf.layers[0].weight.detach(), "q (two l t) h -> q two l t h", two=2, t=token)
    blk = block_ids(f, block_size)
    own = (blk[None, :] == blk[:, None]).to(w_tf.dtype)[:, :, None, None]  # [q, l, 1, 1]
    w_bc = own * w_tf[:, 1] + (1 - own) * w_tf[:, 0]
    state = tf.state_dict()
    state["layers.0.weight"] = rearrange(w_bc, "q l t h -> q (l t) h")
    bc.load_state_dict(state)
    g = torch.Generator().manual_seed(2)
    x, ctx, sigma = torch.randn(5, 4, 2, generator=g), torch.randn(5, 4, 2, generator=g), torch.rand(5, 4, generator=g)
    torch.testing.assert_close(bc(x, sigma, context=ctx), tf(x, sigma, context=ctx))


def test_teacher_forced_is_causal():
    """Frame i's output ignores noisy frames of later blocks and context frames of its own and later blocks."""
    net = _net4(AttentionMode.BLOCK_CAUSAL, 1)
    g = torch.Generator().manual_seed(3)
    x, ctx, sigma = torch.randn(2, 4, 2, generator=g), torch.randn(2, 4, 2, generator=g), torch.rand(2, 4, generator=g)
    base = net(x, sigma, context=ctx)
    x2, ctx2 = x.clone(), ctx.clone()
    x2[:, 2:] += 5.0
    ctx2[:, 1:] -= 5.0
    out = net(x2, sigma, context=ctx2)
    torch.testing.assert_close(out[:, :2], base[:, :2])  # frames 0, 1 read ctx frame 0 and their own x only
    ctx3 = ctx.clone()
    ctx3[:, 0] += 5.0
    assert not torch.allclose(net(x, sigma, context=ctx3)[:, 1:], base[:, 1:])  # later frames read ctx frame 0
    x3 = x.clone()
    x3[:, 0] += 5.0  # a noisy frame is never context for later frames
    torch.testing.assert_close(net(x3, sigma, context=ctx)[:, 1:], base[:, 1:])


def test_context_refused_by_bidirectional_and_shapes_checked():
    net = _net4(AttentionMode.BIDIRECTIONAL, 1)
    x = torch.zeros(2, 4, 2)
    with pytest.raises(ValueError, match="takes no clean context"):
        net(x, torch.zeros(2, 4), context=x)
    with pytest.raises(ValueError, match="shape of x"):
        _net4(AttentionMode.BLOCK_CAUSAL, 1)(x, torch.zeros(2, 4), context=torch.zeros(2, 3, 2))


def test_with_mode_copies_weights():
    bi = _net4(AttentionMode.BIDIRECTIONAL, 1)
    causal = with_mode(bi, AttentionMode.BLOCK_CAUSAL)
    assert causal.config.mode is AttentionMode.BLOCK_CAUSAL
    for (name, a), (_, b) in zip(bi.state_dict().items(), causal.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    assert causal.layers[0].weight.data_ptr() != bi.layers[0].weight.data_ptr()
    x, s = torch.randn(2, 4, 2), torch.rand(2, 4)
    torch.testing.assert_close(with_mode(causal, AttentionMode.BIDIRECTIONAL)(x, s), bi(x, s))
    with pytest.raises(ValueError, match="input layouts differ"):
        with_mode(bi, AttentionMode.TEACHER_FORCING)


@pytest.mark.parametrize("mode", list(AttentionMode))
def test_query_frames_subset_matches_full_output(mode):
    """Computing only some query frames gives exactly those rows of the full output."""
    net = _net4(mode, 2)
    g = torch.Generator().manual_seed(4)
    x, ctx, sigma = torch.randn(3, 4, 2, generator=g), torch.randn(3, 4, 2, generator=g), torch.rand(3, 4, generator=g)
    context = None if mode is AttentionMode.BIDIRECTIONAL else ctx
    full = net.predict(x, sigma, context)
    for span in (slice(0, 2), slice(2, 4), slice(1, 3)):
        torch.testing.assert_close(net.predict(x, sigma, context, frames=span), full[:, span])


def test_state_features_are_the_sines_and_cosines_of_doubling_frequencies_along_axes_and_diagonals():
    x = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    r = math.sqrt(0.5)
    projections = (0.3, -1.2, r * (0.3 - 1.2), r * (0.3 + 1.2))  # e1, e2, (e1 + e2)/√2, (e1 - e2)/√2
    args = [p * w for p in projections for w in (1, 2, 4)]
    by_hand = [math.sin(a) for a in args] + [math.cos(a) for a in args]
    torch.testing.assert_close(state_features(x, 3), torch.tensor([by_hand], dtype=torch.float64))
    one_dim = torch.tensor([[0.7]])
    torch.testing.assert_close(
        state_features(one_dim, 2), torch.tensor([[math.sin(0.7), math.sin(1.4), math.cos(0.7), math.cos(1.4)]])
    )
    assert state_features(x, 0).shape == (1, 0)
    assert feature_directions(3).shape == (9, 3) and torch.allclose(feature_directions(3).norm(dim=1), torch.ones(9))


def test_state_features_widen_the_first_layer_and_keep_causality():
    plain = MaskedFrameMLP(FrameNetConfig(4, 2, hidden=8, depth=2))
    fourier = MaskedFrameMLP(FrameNetConfig(4, 2, hidden=8, depth=2, state_frequencies=3))
    token = 2 + 1 + 2 * 6  # x, sigma, sigma frequencies
    assert plain.layers[0].weight.shape[1] == 4 * token
    assert fourier.layers[0].weight.shape[1] == 4 * (token + 2 * 3 * 4)  # 4 directions in 2-d
    x, s = torch.randn(3, 4, 2), torch.rand(3, 4)
    x2 = x.clone()
    x2[:, 2:] = torch.randn(3, 2, 2)
    torch.testing.assert_close(fourier(x, s)[:, :2], fourier(x2, s)[:, :2])


def test_gated_head_with_equal_experts_is_a_plain_linear_head_and_a_hot_gate_picks_one_expert():
    torch.manual_seed(0)
    head = GatedExpertsHead(groups=3, hidden=5, dim=2, experts=4, gate_features=6)
    plain = GroupedLinear(3, 5, 2)
    with torch.no_grad():  # every expert = the plain head's weights
        head.expert.weight.copy_(plain.weight.repeat(1, 1, 4))
        head.expert.bias.copy_(plain.bias.repeat(1, 4))
    h, u = torch.randn(7, 3, 5), torch.randn(7, 3, 6)
    torch.testing.assert_close(head(h, u), plain(h))
    torch.testing.assert_close(head(h[:, 1:], u[:, 1:], slice(1, 3)), plain(h[:, 1:], slice(1, 3)))
    with torch.no_grad():  # different experts, a very hot gate: the output is the expert with the largest logit
        head.expert.weight.normal_()
        head.log_temperature.fill_(8.0)
    experts = rearrange(head.expert(h), "b g (e d) -> b g e d", e=4)
    pick = head.gate(u).argmax(dim=-1)  # [B, G]
    chosen = torch.gather(experts, 2, pick[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
    torch.testing.assert_close(head(h, u), chosen)
    torch.testing.assert_close(head.gate_weights(u).sum(-1), torch.ones(7, 3))


def test_a_network_with_the_gated_head_has_it_in_place_of_the_last_layer():
    net = MaskedFrameMLP(FrameNetConfig(3, 1, AttentionMode.TEACHER_FORCING, hidden=8, depth=2, experts=3))
    assert isinstance(net.layers[-1], GatedExpertsHead) and len(net.layers) == 3
    out = net(torch.randn(4, 3, 1), torch.rand(4, 3), torch.randn(4, 3, 1))
    assert out.shape == (4, 3, 1)
    with pytest.raises(ValueError, match="experts 0"):
        FrameNetConfig(3, 1, experts=1)
    with pytest.raises(ValueError, match="state_frequencies"):
        FrameNetConfig(3, 1, state_frequencies=-1)
