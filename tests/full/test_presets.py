"""Presets by name: the registry, the tiny preset's folder, clear errors."""

from __future__ import annotations

import pytest

from full.presets import PRESETS, get_preset
from full.tiny import TINY


def test_tiny_preset_writes_a_loadable_folder(tmp_path):
    preset = get_preset("tiny")
    assert (preset.height, preset.width, preset.text_length) == (TINY.height, TINY.width, TINY.text_length)
    folder = preset.write(str(tmp_path))
    assert {p.name for p in tmp_path.iterdir()} >= {"transformer", "vae", "text_encoder", "tokenizer"}
    assert folder == str(tmp_path)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="known presets: " + ", ".join(sorted(PRESETS))):
        get_preset("huge")
