"""Loading the sampler's models: presets through the folder path, devices, video sizes."""

from __future__ import annotations

import pytest
import torch

from full.components import load_components, resolve_device
from full.model_files import ModelFolderError
from full.tiny import TINY


def test_tiny_preset_loads_like_a_model_folder(tiny_components):
    assert tiny_components.latent_shape(TINY.height, TINY.width) == (TINY.latent_channels, 8, 8)
    assert tiny_components.text.max_length == TINY.text_length
    assert tiny_components.device == torch.device("cpu")


def test_video_size_errors(tiny_components):
    with pytest.raises(ValueError, match="must be positive"):
        tiny_components.latent_shape(0, 64)
    with pytest.raises(ValueError, match="multiple of 16x16"):
        tiny_components.latent_shape(72, 64)


def test_resolve_device_and_missing_folders(tmp_path):
    assert resolve_device("cpu", "auto") == (torch.device("cpu"), torch.float32)
    assert resolve_device("cpu", "bf16")[1] == torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_device("cpu", "fp8")
    with pytest.raises(ModelFolderError, match="does not exist"):
        load_components(tmp_path / "nowhere")
    with pytest.raises(ModelFolderError, match="no transformer/ folder"):
        load_components(tmp_path)
