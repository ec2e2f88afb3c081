"""Prompt encoding with a tiny UMT5 encoder loaded from a local folder."""

from __future__ import annotations

import pytest
import torch

from full.model_files import ModelFolderError
from full.text import load_text_encoder
from full.tiny import TINY, tiny_text_encoder, tiny_tokenizer


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("wan")
    tiny_text_encoder(seed=2).save_pretrained(path / "text_encoder")
    tiny_tokenizer().save_pretrained(path / "tokenizer")
    return path


def test_embeddings_are_zero_past_the_prompt_and_batch_independent(folder):
    encoder = load_text_encoder(folder)
    assert encoder.max_length == TINY.text_length
    short, long = "a cat", "a dog   running on the beach at sunset"
    both = encoder.encode([short, long])
    assert both.shape == (2, TINY.text_length, TINY.text_dim)
    tokens = len(short.encode()) + 1  # byte tokens + </s>
    assert both[0, :tokens].abs().sum(-1).gt(0).all() and both[0, tokens:].eq(0).all()
    torch.testing.assert_close(encoder.encode([short])[0], both[0], rtol=0, atol=1e-6)
    # whitespace is cleaned like diffusers' WanPipeline
    torch.testing.assert_close(encoder.encode(["a dog running on the beach at sunset"])[0], both[1])


def test_missing_folders_fail_clearly(tmp_path):
    with pytest.raises(ModelFolderError, match="tokenizer"):
        load_text_encoder(tmp_path)
