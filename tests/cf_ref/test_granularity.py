"""cf_ref.granularity: draws shared within a sample / block / frame, uniform and independent across; the levels'
shifted-uniform law; clear errors."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cf_ref import granularity as gr
from cf_ref.schedule import unshift_sigma


def test_block_ids_and_errors():
    assert gr.block_ids(6, 3).tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="does not divide"):
        gr.block_ids(7, 3)


@given(
    gran=st.sampled_from(list(gr.Granularity)),
    b=st.sampled_from([1, 2, 3]),
    nb=st.integers(1, 4),
    seed=st.integers(0, 99),
)
def test_training_sigmas_granularity_and_range(gran, b, nb, seed):
    f = b * nb
    g = torch.Generator().manual_seed(seed)
    s = gr.sample_training_sigmas(64, f, gran, block_size=b, shift=3.0, t_min=20, t_max=980, generator=g)
    assert s.shape == (64, f)
    assert float(s.min()) >= 0.02 - 1e-7 and float(s.max()) <= 0.98 + 1e-7
    if gran is gr.Granularity.SAMPLE:
        assert bool((s == s[:, :1]).all())
    if gran is gr.Granularity.BLOCK:
        blocks = s.reshape(64, nb, b)
        assert bool((blocks == blocks[..., :1]).all())


def test_training_sigmas_follow_shifted_uniform_law():
    s = gr.sample_training_sigmas(
        20000, 1, gr.Granularity.SAMPLE, shift=5.0, generator=torch.Generator().manual_seed(0)
    )
    u = unshift_sigma(s.double().flatten(), 5.0).numpy()
    # the unshifted draws are uniform on [0, 1]: compare quantiles
    np.testing.assert_allclose(np.quantile(u, [0.1, 0.5, 0.9]), [0.1, 0.5, 0.9], atol=0.02)


@pytest.mark.parametrize(
    "granularity,groups", [(gr.Granularity.SAMPLE, [[0, 1, 2, 3]]), (gr.Granularity.BLOCK, [[0, 1], [2, 3]]),
                           (gr.Granularity.FRAME, [[0], [1], [2], [3]])]
)  # fmt: skip
def test_sample_indices_share_within_a_group_uniform_and_independent_across(granularity, groups):
    idx = gr.sample_indices(20_000, 4, 5, granularity, block_size=2, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (20_000, 4) and idx.dtype == torch.long
    for group in groups:
        assert bool((idx[:, group] == idx[:, group[:1]]).all())
    shares = torch.bincount(idx[:, 0], minlength=5).double() / 20_000
    torch.testing.assert_close(shares, torch.full((5,), 0.2, dtype=torch.float64), atol=0.015, rtol=0)
    if len(groups) > 1:  # different groups agree only by chance (1/5)
        assert float((idx[:, groups[0][0]] == idx[:, groups[1][0]]).double().mean()) == pytest.approx(0.2, abs=0.015)


def test_sample_indices_per_sample_consume_the_generator_as_one_block_of_all_frames():
    """A per-video draw is a per-block draw with b = F: same numbers from the same generator state."""
    a = gr.sample_indices(7, 6, 9, gr.Granularity.SAMPLE, generator=torch.Generator().manual_seed(4))
    b = gr.sample_indices(7, 6, 9, gr.Granularity.BLOCK, block_size=6, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


def test_expand_per_block_repeats():
    vals = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert gr.expand_per_block(vals, 3).tolist() == [[1, 1, 1, 2, 2, 2], [3, 3, 3, 4, 4, 4]]


def test_frame_granularity_draws_are_independent_across_frames():
    s = gr.sample_training_sigmas(20_000, 2, gr.Granularity.FRAME, generator=torch.Generator().manual_seed(1))
    corr = torch.corrcoef(s.double().T)[0, 1]
    assert abs(float(corr)) < 0.03
    np.testing.assert_allclose(np.quantile(s[:, 1].double().numpy(), [0.25, 0.75]), [0.25, 0.75], atol=0.02)


def test_boundary_errors_name_what_was_expected():
    with pytest.raises(ValueError, match="t_min < t_max"):
        gr.sample_training_sigmas(2, 3, t_min=500, t_max=400)
    with pytest.raises(ValueError, match="num_choices"):
        gr.sample_indices(2, 4, 0)
    with pytest.raises(ValueError, match="Granularity"):
        gr.sample_indices(2, 4, 3, "block")
    with pytest.raises(ValueError, match="does not divide"):
        gr.sample_indices(2, 4, 3, gr.Granularity.BLOCK, block_size=3)
    with pytest.raises(ValueError, match="per-block values"):
        gr.expand_per_block(torch.zeros(2, 2), 0)
    with pytest.raises(ValueError, match="Granularity"):
        gr.sample_training_sigmas(2, 2, "frame")  # was silently per block
