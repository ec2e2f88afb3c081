"""First-frame conditioning: frame 0 stays the image through a rollout, the inner model sees it clean at σ = 0."""

from __future__ import annotations

import pytest
import torch

from cf_ref.first_frame import FirstFrameConditioned
from cf_ref.rollout import few_step_rollout


class Recorder:
    """A blockwise model with a hand-written field ``v = x·(1+σ) + mean(cache)`` that records what it is given."""

    def __init__(self):
        self.calls, self.commits = [], []

    def velocity(self, x, sigma, block, cache):
        self.calls.append((x.clone(), sigma.clone(), block))
        context = torch.stack(cache).mean() if cache else torch.tensor(0.0)
        return x * (1 + sigma[:, :, None]) + context

    def commit(self, x, sigma, block, cache):
        self.commits.append((x.clone(), sigma.clone(), block))
        return [*cache, x.mean()]


@pytest.mark.parametrize("block", [1, 3])
def test_frame_zero_is_the_image_and_the_inner_model_sees_it_clean(block):
    image = torch.randn(2, 1, 4)
    noise = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(0))
    inner = Recorder()
    sigmas = torch.tensor([1.0, 0.6, 0.3])
    out = few_step_rollout(FirstFrameConditioned(inner, image), noise, block, sigmas, [], context_noise=0.1)
    torch.testing.assert_close(out.x0[:, :1], image, rtol=0, atol=1e-6)  # x − σ(x − c)/σ: c up to rounding
    first_block_calls = [c for c in inner.calls if c[2] == 0]
    if block == 1:
        assert first_block_calls == []  # the image alone: the frame-wise prefill, no model call
    else:
        assert len(first_block_calls) == 3
        for x, sigma, _ in first_block_calls:
            assert torch.equal(x[:, 0:1], image) and torch.equal(sigma[:, 0], torch.zeros(2))
            assert (sigma[:, 1:] > 0).all()
    x, sigma, _ = inner.commits[0]
    assert torch.equal(x[:, :1], image) and torch.equal(sigma[:, 0], torch.zeros(2))
    assert torch.allclose(sigma[:, 1:], torch.tensor(0.1))  # the generated frames at the context-noise level


def test_later_blocks_and_frames_are_the_inner_models():
    """Frames 1… of block 0 and every later block: exactly the rollout of the inner model on the conditioned input
    (computed here by hand for one step: x̂0 = x − σ v)."""
    image, noise = torch.randn(1, 1, 3), torch.randn(1, 4, 3)
    out = few_step_rollout(FirstFrameConditioned(Recorder(), image), noise, 2, torch.tensor([0.8]), [])
    x = torch.cat([image, noise[:, 1:2]], dim=1)
    v = x * torch.tensor([1.0, 1.8])[None, :, None]
    block0 = torch.cat([image, (x - 0.8 * v)[:, 1:]], dim=1)
    v1 = noise[:, 2:] * 1.8 + block0.mean()
    torch.testing.assert_close(out.x0, torch.cat([block0, noise[:, 2:] - 0.8 * v1], dim=1))


def test_bad_image_shapes():
    with pytest.raises(ValueError, match="one frame"):
        FirstFrameConditioned(Recorder(), torch.zeros(1, 2, 3))
    cond = FirstFrameConditioned(Recorder(), torch.zeros(1, 1, 3))
    with pytest.raises(ValueError, match="does not fit"):
        cond.velocity(torch.zeros(1, 2, 4), torch.ones(1, 2), 0, [])
