"""Shared fixtures for the full-track tests: tiny random models built in code (CPU, fp32)."""

from __future__ import annotations

import pytest
import torch

from full.tiny import TINY, tiny_transformer


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded machine OpenMP barriers make them
    many times slower; run each test single-threaded and restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tiny_transformer(seed=0)


@pytest.fixture
def latents():
    """``[B=2, F=6, C, H=8, W=8]`` random latents (16 tokens per frame)."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 6, TINY.latent_channels, 8, 8, generator=g)


@pytest.fixture
def text():
    g = torch.Generator().manual_seed(2)
    return torch.randn(2, 5, TINY.text_dim, generator=g)


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tiny-model tests on one CPU thread (on a shared machine, multi-threaded tiny ops mostly spin)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
