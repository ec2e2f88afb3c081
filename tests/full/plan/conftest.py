"""A small configuration and architecture for the plan's tests: the published chunk-wise config at a tiny size."""

from __future__ import annotations

import pytest

from full.config import build_config
from full.model import WAN21_T2V_1_3B
from full.plan.stages import Architectures

SMALL = dict(WAN21_T2V_1_3B, num_layers=1, num_attention_heads=2, ffn_dim=256, text_dim=64, freq_dim=32)
SMALL_VIDEO = ["video.latent_frames=6", "video.latent_height=8", "video.latent_width=8"]


@pytest.fixture(scope="session")
def small_config():
    return build_config("configs/full/causal_forcing_chunkwise.yaml", SMALL_VIDEO)


@pytest.fixture(scope="session")
def small_arch():
    """The base model at width 256 (2 heads × 128), 1 layer; the real score one layer deeper (a distinct size)."""
    return Architectures(SMALL, dict(SMALL, num_layers=2), text_tokens=16)
