"""Shared fixtures for the full-track tests: tiny random models built in code (CPU, fp32)."""

from __future__ import annotations

import pytest
import torch

from full.tiny import TINY, TINY_ARCHITECTURES, tiny_transformer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tiny_transformer(seed=0)


@pytest.fixture(scope="module", params=list(TINY_ARCHITECTURES))
def arch(request):
    """``(config, model, latents [2, 6, C, 8, 8], text)`` of one architecture's tiny random model: the mode tests
    run on every base model (:data:`full.tiny.TINY_ARCHITECTURES`)."""
    cfg = TINY_ARCHITECTURES[request.param]
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 6, cfg.latent_channels, 8, 8, generator=g)
    text = torch.randn(2, 5, cfg.text_dim, generator=torch.Generator().manual_seed(2))
    return cfg, tiny_transformer(seed=0, cfg=cfg), latents, text


@pytest.fixture
def latents():
    """``[B=2, F=6, C, H=8, W=8]`` random latents (16 tokens per frame)."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 6, TINY.latent_channels, 8, 8, generator=g)


@pytest.fixture
def text():
    g = torch.Generator().manual_seed(2)
    return torch.randn(2, 5, TINY.text_dim, generator=g)


@pytest.fixture(scope="session")
def tiny_components():
    """The tiny preset's models (DiT, VAE, text encoder), loaded through a written folder like a real model.
    Streams share the VAE's decode cache: consume one stream before starting the next."""
    from full.components import load_preset

    components, _ = load_preset("tiny")
    return components


@pytest.fixture(params=["dynamic", "static"])
def cache_kind(request):
    """Both KV caches (:class:`full.cache.WanKVCache`, :class:`full.static_cache.StaticKVCache`): the equivalence
    tests that take this fixture run over each."""
    return request.param
