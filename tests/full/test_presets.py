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


def test_tiny_ti2v_5b_preset_samples_an_image_conditioned_mp4_through_the_wan22_vae(tmp_path):
    """48-channel latents, 16× VAE with 2×2 pixel patches; ``--image`` keeps frame 0 (chunk-wise, block 3); the MP4
    has 1 + 4·(F−1) frames at the preset's size and its first frame is the image (the VAE is random, so only
    the latents are compared exactly)."""
    import imageio.v2 as imageio
    import numpy as np
    import torch
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from cf_ref.cli import main
    from full.components import load_preset
    from full.tiny import TINY_TI2V_5B
    from full.video import encode_image, load_image, read_mp4

    components, preset = load_preset("tiny-ti2v-5b")
    assert components.latent_shape(preset.height, preset.width) == (48, 8, 8)
    assert components.vae.config.patch_size == 2 and components.vae.config.scale_factor_spatial == 16
    pixels = np.random.default_rng(0).integers(0, 255, (TINY_TI2V_5B.height, TINY_TI2V_5B.width, 3), dtype=np.uint8)
    imageio.imwrite(tmp_path / "first.png", pixels)
    args = ["full", "sample", "--preset", "tiny-ti2v-5b", "--prompt", "a kite", "--image", str(tmp_path / "first.png")]
    result = CliRunner().invoke(
        main, [*args, "--frames", "6", "--steps", "2", "--save-latents", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert read_mp4(tmp_path / "000_a_kite.mp4").shape == (21, TINY_TI2V_5B.height, TINY_TI2V_5B.width, 3)
    latents = next(iter(load_file(str(tmp_path / "000_a_kite.safetensors")).values()))
    image = encode_image(components.vae, load_image(tmp_path / "first.png", preset.height, preset.width))
    assert latents.shape[-3:] == (48, 8, 8)
    torch.testing.assert_close(latents.reshape(image.shape[0], -1, 48, 8, 8)[:, :1], image, rtol=0, atol=1e-5)


def test_small_preset_is_the_shipped_folder_with_the_settings_its_student_was_trained_for():
    from full.sample_files import preset_config
    from full.small.ship import SHIPPED, read_manifest

    preset, trained = get_preset("small"), read_manifest(SHIPPED)["sampling"]
    assert preset.write("/not/used") == str(SHIPPED)  # shipped: nothing to build
    config = preset_config(preset, seed=2)
    assert (config.num_frames, config.block_size, config.steps, config.shift) == (
        trained["frames"],
        trained["block_size"],
        trained["steps"],
        trained["shift"],
    )
    assert (config.height, config.width, config.seed, preset.fps) == (trained["height"], trained["width"], 2, 6)
    assert preset_config(preset, num_frames=3).num_frames == 3  # overrides win
    assert get_preset("tiny").sample_settings() == {"height": TINY.height, "width": TINY.width, "block_size": 3}
