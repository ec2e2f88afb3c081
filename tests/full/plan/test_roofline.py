from __future__ import annotations

import pytest

from full.plan.flops import OpCount
from full.plan.gpus import GPU
from full.plan.roofline import chunk_rate, roofline, video_frames

G = GPU("test", bf16_flops=1e15, bandwidth=1e12, memory=80e9)


def test_roofline_is_the_slower_of_compute_and_memory():
    t = roofline(OpCount(flops=4e14, bytes=1e11), G, mfu=0.5)
    assert t.compute_s == pytest.approx(0.8) and t.memory_s == pytest.approx(0.1)
    assert t.seconds == pytest.approx(0.8) and t.bound == "compute"
    assert roofline(OpCount(flops=1, bytes=2e12), G).bound == "memory"
    with pytest.raises(ValueError):
        roofline(OpCount(1, 1), G, mfu=0.0)


def test_chunk_rate_spreads_the_rollout_over_its_chunks():
    rate = chunk_rate(OpCount(flops=7 * 4e14, bytes=0), latent_frames=21, block_size=3, gpu=G, mfu=1.0)
    assert rate.chunks == 7 and rate.flops_per_chunk == 4e14
    assert rate.time_per_chunk.seconds == pytest.approx(0.4)
    assert video_frames(21) == 81
    assert rate.fps == pytest.approx(81 / (7 * 0.4))
