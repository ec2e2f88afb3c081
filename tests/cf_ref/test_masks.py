import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cf_ref.masks import (
    AttentionMode,
    block_causal_visibility,
    frame_visibility,
    teacher_forcing_visibility,
    token_mask,
)

configs = st.tuples(st.sampled_from([1, 2, 3]), st.integers(1, 5))  # (block size, number of blocks)


@given(cfg=configs, window=st.one_of(st.none(), st.integers(1, 4)))
def test_block_causal_matches_brute_force_and_never_sees_the_future(cfg, window):
    b, nb = cfg
    f = b * nb
    vis = block_causal_visibility(f, b, window)
    for i in range(f):
        for j in range(f):
            want = j // b <= i // b and (window is None or j // b > i // b - window)
            assert bool(vis[i, j]) == want
            if j // b > i // b:
                assert not vis[i, j]


@given(cfg=configs)
def test_teacher_forcing_visibility_is_exactly_the_definition(cfg):
    b, nb = cfg
    f = b * nb
    vis = teacher_forcing_visibility(f, b)
    assert vis.shape == (2 * f, 2 * f)
    for q in range(2 * f):
        for k in range(2 * f):
            q_noisy, k_noisy = q >= f, k >= f
            qb, kb = (q % f) // b, (k % f) // b
            if not q_noisy:  # clean sees clean blocks <= own, never a noisy frame
                want = (not k_noisy) and kb <= qb
            else:  # noisy sees clean blocks < own and noisy frames of its own block
                want = (kb < qb) if not k_noisy else (kb == qb)
            assert bool(vis[q, k]) == want, (q, k)


@given(cfg=configs, t=st.integers(1, 4))
def test_token_mask_expands_frames_to_tokens(cfg, t):
    b, nb = cfg
    f = b * nb
    for mode in AttentionMode:
        vis = frame_visibility(mode, f, b)
        tok = token_mask(vis, t)
        assert tok.shape == (vis.shape[0] * t, vis.shape[1] * t)
        for n in range(tok.shape[0]):
            for m in range(tok.shape[1]):
                assert bool(tok[n, m]) == bool(vis[n // t, m // t])


def test_token_mask_with_different_key_tokens_and_bidirectional():
    vis = frame_visibility(AttentionMode.BIDIRECTIONAL, 3)
    assert bool(vis.all())
    assert token_mask(vis, 2, key_tokens_per_frame=5).shape == (6, 15)


def test_mask_errors_are_clear():
    with pytest.raises(ValueError, match="does not divide"):
        block_causal_visibility(7, 3)
    with pytest.raises(ValueError, match="window"):
        block_causal_visibility(6, 3, window=0)
    with pytest.raises(ValueError, match="bool"):
        token_mask(torch.ones(2, 2), 3)
    with pytest.raises(ValueError, match="window"):
        frame_visibility(AttentionMode.TEACHER_FORCING, 4, 1, window=2)


def test_frame_and_token_counts_are_validated():
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        frame_visibility(AttentionMode.BIDIRECTIONAL, 0)
    with pytest.raises(ValueError, match="tokens_per_frame must be >= 1"):
        token_mask(torch.ones(2, 2, dtype=torch.bool), 0)
    with pytest.raises(ValueError, match="2-D bool"):
        token_mask(torch.ones(2, dtype=torch.bool), 1)
