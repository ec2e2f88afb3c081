"""The small preset's patch-code "VAE" and word-vector "text encoder" behind the Wan interfaces."""

from __future__ import annotations

import itertools

import pytest
import torch
from einops import rearrange

from full.components import load_components
from full.small.components import (
    holds_patch_code,
    holds_word_vectors,
    load_patch_code_vae,
    load_word_vector_encoder,
    write_small_components,
)
from full.synthetic import (
    COLOURS,
    DIRECTIONS,
    SHAPES,
    BounceSpec,
    embed_caption,
    patch_decode,
    patch_encode,
    render_scene,
)
from full.video import StreamingDecoder, decode_latents, encode_image, normalize_latents

SPEC = BounceSpec(count=4, frames=6)
SCALE = 4


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("small-components")
    write_small_components(path, SPEC, display_scale=SCALE)
    return path


def test_patch_code_round_trips_exactly_and_is_the_synthetic_code(folder):
    vae = load_patch_code_vae(folder)
    assert (vae.config.z_dim, vae.config.scale_factor_spatial, vae.config.scale_factor_temporal) == (12, 8, 1)
    z = torch.rand(2, 12, 6, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1  # [B, C, F, h, w]
    video = vae.decode(z).sample  # [B, 3, F, 64, 64]
    assert video.shape == (2, 3, 6, 64, 64)
    assert torch.equal(vae.encode(video).latent_dist.mode(), z)  # exact
    # independent: full.synthetic's patch_decode, mapped to [-1, 1], each pixel repeated SCALE× per axis
    rgb = patch_decode(rearrange(z, "b c f h w -> b f c h w"), SPEC.patch)  # [B, F, 16, 16, 3]
    expected = (
        rearrange(2 * rgb - 1, "b f h w c -> b c f h w").repeat_interleave(SCALE, -2).repeat_interleave(SCALE, -1)
    )
    torch.testing.assert_close(video, expected, rtol=0, atol=1e-6)
    # a rendered scene shown at the display size encodes to its patch code
    scene = SPEC.scenes()[0]
    frames = render_scene(scene, SPEC.frames, SPEC.pixels)  # [F, 16, 16, 3] in [0, 1]
    shown = rearrange(2 * frames - 1, "f h w c -> 1 c f h w").repeat_interleave(SCALE, -2).repeat_interleave(SCALE, -1)
    code = rearrange(patch_encode(frames, SPEC.patch), "f c h w -> 1 c f h w")
    torch.testing.assert_close(vae.encode(shown).latent_dist.mode(), code, rtol=0, atol=1e-6)


def test_patch_code_through_the_wan_vae_helpers(folder):
    """Latents are the code (mean 0, std 1); the streaming decoder block by block equals one decode; an image
    encodes to its latent frame."""
    vae = load_patch_code_vae(folder)
    z = torch.rand(1, 6, 12, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1  # [B, F, C, h, w]
    assert torch.equal(normalize_latents(vae, z), z)
    whole = decode_latents(vae, z)
    decoder = StreamingDecoder(vae)
    pieces = torch.cat([decoder.decode_next(z[:, i : i + 3]) for i in (0, 3)], dim=1)
    assert whole.shape == (1, 6, 3, 64, 64) and torch.equal(pieces, whole)
    assert torch.equal(encode_image(vae, whole[:, 0]), z[:, :1])
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.encode(torch.zeros(1, 3, 1, 60, 64))


def test_word_vectors_equal_the_small_track_caption_vectors(folder):
    text = load_word_vector_encoder(folder)
    captions = [f"a {c} {s} moving {d}" for c, s, d in itertools.product(COLOURS, SHAPES, DIRECTIONS)] + [""]
    expected = torch.stack([embed_caption(c, SPEC.text_length, SPEC.text_dim) for c in captions])
    assert torch.equal(text.encode(captions), expected)
    left = embed_caption("a red square moving left", SPEC.text_length, SPEC.text_dim)
    assert torch.equal(text.encode(["  A Red SQUARE moving left "])[0], left)  # case and spaces as embed_caption


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("a purple square moving left", "unknown word 'purple'"),
        ("a cat", "unknown word 'cat'"),
        ("red square moving left", "outside the training grammar"),
        ("a square red moving left", "outside the training grammar"),
        ("a red square moving left and", "outside the training grammar"),
        ("a red square moving left and a blue disk moving up", "outside the training grammar"),  # one object trained
    ],
)
def test_a_prompt_outside_the_grammar_is_one_line_listing_what_is_understood(folder, prompt, message):
    text = load_word_vector_encoder(folder)
    with pytest.raises(ValueError, match=message) as info:
        text.encode([prompt])
    assert "understands 'a COLOUR SHAPE moving DIRECTION'" in str(info.value) and "\n" not in str(info.value)
    assert all(w in str(info.value) for w in (*COLOURS, *SHAPES, *DIRECTIONS))


def test_two_object_grammar_when_the_data_has_two(tmp_path):
    write_small_components(tmp_path, BounceSpec(objects=2, text_length=12), display_scale=1)
    text = load_word_vector_encoder(tmp_path)
    caption = "a red square moving left and a blue disk moving up"
    assert torch.equal(text.encode([caption])[0], embed_caption(caption, 12, 32))


def test_folders_are_told_apart(folder, tmp_path):
    from full.tiny import write_tiny_pipeline

    assert holds_patch_code(folder) and holds_word_vectors(folder)
    write_tiny_pipeline(tmp_path)
    assert not holds_patch_code(tmp_path) and not holds_word_vectors(tmp_path)
    components = load_components(tmp_path)  # the tiny folder still loads Wan's VAE and UMT5
    assert type(components.vae).__name__ == "AutoencoderKLWan"
    assert type(components.text.model).__name__ == "UMT5EncoderModel"


def test_a_malformed_small_folder_is_one_line(tmp_path):
    from full.model_files import ModelFolderError

    write_small_components(tmp_path, SPEC)
    (tmp_path / "vae" / "config.json").write_text('{"_class_name": "PatchCodeVAE", "display_scale": 2}')
    with pytest.raises(ModelFolderError, match="not a patch-code VAE config"):
        load_patch_code_vae(tmp_path)
    (tmp_path / "text_encoder" / "config.json").write_text(
        '{"_class_name": "WordVectorEncoder", "words": ["a"], "d_model": 4, "max_length": 8, "objects": 1}'
    )
    with pytest.raises(ModelFolderError, match="its words are not this grammar's"):
        load_word_vector_encoder(tmp_path)
