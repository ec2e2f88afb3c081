"""The probes' caption codes: ``words`` is the shipped embedding; ``axis`` codes the direction words as ±h, ±v."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from full.synthetic import embed_caption

_PATH = Path(__file__).resolve().parents[2] / "experiments" / "small_caption_codes.py"
_SPEC = importlib.util.spec_from_file_location("small_caption_codes", _PATH)
codes = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(codes)


def test_words_code_is_the_shipped_embedding():
    for caption in ("a red square moving left", "a blue disk moving up", ""):
        assert torch.equal(codes.embed(caption, 8, 32, "words"), embed_caption(caption, 8, 32))


def test_axis_code_signs_and_orthogonal_axes():
    e = {d: codes.embed(f"a red disk moving {d}", 8, 32, "axis") for d in ("right", "left", "down", "up")}
    right, down = e["right"][4], e["down"][4]
    assert torch.allclose(e["left"][4], -right) and torch.allclose(e["up"][4], -down)
    assert abs(float(right @ down)) < 1e-4 * 32
    assert torch.allclose(right.norm(), torch.tensor(32**0.5)) and torch.allclose(down.norm(), torch.tensor(32**0.5))
    shipped = embed_caption("a red disk moving right", 8, 32)
    assert torch.equal(e["right"][:4], shipped[:4]) and torch.equal(e["right"][5:], shipped[5:])
    assert not torch.allclose(right, shipped[4])


def test_unknown_code_is_an_error():
    with pytest.raises(ValueError, match="caption code"):
        codes.embed("a red disk moving up", 8, 32, "onehot")
