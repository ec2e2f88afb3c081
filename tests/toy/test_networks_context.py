"""Teacher-forced evaluation of a block-causal MaskedFrameMLP, and mode conversion (toy/networks.py)."""

import pytest
import torch
from einops import rearrange

from cf_ref.masks import AttentionMode
from cf_ref.schedule import block_ids
from toy.networks import FrameNetBlockwise, FrameNetConfig, MaskedFrameMLP, with_mode


def _net(mode: AttentionMode, block_size: int, seed: int = 0) -> MaskedFrameMLP:
    torch.manual_seed(seed)
    return MaskedFrameMLP(FrameNetConfig(num_frames=4, dim=2, mode=mode, block_size=block_size, hidden=16, depth=2))


@pytest.mark.parametrize("block_size", [1, 2])
def test_teacher_forced_equals_blockwise_cache(block_size):
    """net(x, σ, context=c) for block j == the block-by-block adapter with c's earlier blocks committed clean."""
    net = _net(AttentionMode.BLOCK_CAUSAL, block_size)
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
    tf = _net(AttentionMode.TEACHER_FORCING, block_size)
    bc = _net(AttentionMode.BLOCK_CAUSAL, block_size, seed=1)
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
    net = _net(AttentionMode.BLOCK_CAUSAL, 1)
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
    net = _net(AttentionMode.BIDIRECTIONAL, 1)
    x = torch.zeros(2, 4, 2)
    with pytest.raises(ValueError, match="takes no clean context"):
        net(x, torch.zeros(2, 4), context=x)
    with pytest.raises(ValueError, match="shape of x"):
        _net(AttentionMode.BLOCK_CAUSAL, 1)(x, torch.zeros(2, 4), context=torch.zeros(2, 3, 2))


def test_with_mode_copies_weights():
    bi = _net(AttentionMode.BIDIRECTIONAL, 1)
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
    net = _net(mode, 2)
    g = torch.Generator().manual_seed(4)
    x, ctx, sigma = torch.randn(3, 4, 2, generator=g), torch.randn(3, 4, 2, generator=g), torch.rand(3, 4, generator=g)
    context = None if mode is AttentionMode.BIDIRECTIONAL else ctx
    full = net.predict(x, sigma, context)
    for span in (slice(0, 2), slice(2, 4), slice(1, 3)):
        torch.testing.assert_close(net.predict(x, sigma, context, frames=span), full[:, span])
