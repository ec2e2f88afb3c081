"""VAE streaming decode, image encoding and MP4 output (tiny random Wan VAE)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from full.tiny import TINY, tiny_vae
from full.video import (
    StreamingDecoder,
    decode_latents,
    denormalize_latents,
    encode_image,
    load_image,
    normalize_latents,
    read_mp4,
    to_uint8,
    video_frames,
    write_mp4,
)


@pytest.fixture(scope="module")
def vae():
    return tiny_vae(seed=1)


@torch.no_grad()
def test_streaming_decode_block_by_block_equals_one_decode(vae):
    z = torch.randn(1, 5, TINY.latent_channels, 8, 8, generator=torch.Generator().manual_seed(0))
    full = decode_latents(vae, z)
    assert full.shape == (1, video_frames(5), 3, TINY.height, TINY.width) == (1, 17, 3, 64, 64)
    decoder = StreamingDecoder(vae)
    parts = [decoder.decode_next(z[:, :1]), decoder.decode_next(z[:, 1:2]), decoder.decode_next(z[:, 2:5])]
    assert [p.shape[1] for p in parts] == [1, 4, 12]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=0, atol=1e-6)
    # and the decoder is causal: a later block does not change frames already emitted
    decoder = StreamingDecoder(vae)
    other = decoder.decode_next(z[:, :2])
    torch.testing.assert_close(other, full[:, :5], rtol=0, atol=1e-6)


@torch.no_grad()
def test_latent_normalisation_round_trip_and_image_encoding(vae):
    z = torch.randn(2, 3, TINY.latent_channels, 8, 8)
    torch.testing.assert_close(normalize_latents(vae, denormalize_latents(vae, z)), z)
    image = torch.rand(2, 3, TINY.height, TINY.width) * 2 - 1
    latent = encode_image(vae, image)
    assert latent.shape == (2, 1, TINY.latent_channels, 8, 8) and torch.isfinite(latent).all()


def test_mp4_round_trip_keeps_frame_count_and_size(tmp_path):
    gradient = np.linspace(0, 255, 32, dtype=np.float64)
    frames = np.stack([np.broadcast_to((gradient[None, :, None] + 8 * i) % 256, (24, 32, 3)) for i in range(9)])
    frames = frames.astype(np.uint8)
    path = write_mp4(tmp_path / "clip.mp4", frames, fps=16)
    back = read_mp4(path)
    assert back.shape == frames.shape
    assert np.abs(back.astype(float) - frames).mean() < 8  # lossy H.264, smooth content
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary left behind
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "bad.mp4", frames.astype(np.float32))


def test_to_uint8_maps_the_range():
    video = torch.tensor([-1.0, 0.0, 1.0]).view(3, 1, 1, 1).expand(3, 3, 2, 2)
    out = to_uint8(video)
    assert out.shape == (3, 2, 2, 3) and out.dtype == np.uint8
    assert out[:, 0, 0, 0].tolist() == [0, 128, 255]


def test_load_image_checks_the_size(tmp_path):
    import imageio.v2 as imageio

    imageio.imwrite(tmp_path / "img.png", np.zeros((64, 48, 3), dtype=np.uint8))
    assert load_image(tmp_path / "img.png", 64, 48).shape == (1, 3, 64, 48)
    with pytest.raises(ValueError, match="48x64 pixels; the video is 64x64"):
        load_image(tmp_path / "img.png", 64, 64)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png", 64, 64)
