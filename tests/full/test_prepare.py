"""full.prepare: videos / latents / prompts → sets, with tiny random VAE + UMT5 saved to local folders."""

from __future__ import annotations

import pytest
import torch

from cf_ref.io import save_tensors
from full.data import DataError, SetKind, TensorSet
from full.prepare import (
    embed,
    encode_video,
    load_text_encoder,
    load_vae,
    prepare_latents,
    prepare_prompts,
    prepare_videos,
    read_video,
    write_synthetic_videos,
)
from full.tiny import TINY, tiny_text_encoder, tiny_tokenizer, tiny_vae


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory):
    """A Wan-layout folder with the tiny VAE (non-trivial latent statistics), text encoder and tokenizer."""
    root = tmp_path_factory.mktemp("wan")
    vae = tiny_vae(seed=1)
    vae.register_to_config(latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[2.0, 1.0, 0.5, 1.5])
    vae.save_pretrained(root / "vae")
    tiny_text_encoder(seed=2).save_pretrained(root / "text_encoder")
    tiny_tokenizer().save_pretrained(root / "tokenizer")
    return root


def test_videos_to_latent_set(tmp_path, wan_folder):
    videos = write_synthetic_videos(tmp_path / "videos", count=2, frames=5, height=32, width=32)
    vae = load_vae(wan_folder)
    text = load_text_encoder(wan_folder, max_length=TINY.text_length)
    out = prepare_videos(videos, tmp_path / "set", vae, text, frames=5, height=32, width=32, shard_size=1)
    data = TensorSet(out, SetKind.LATENTS)
    assert len(data) == 2 and data.fields["latents"] == (2, TINY.latent_channels, 4, 4)  # 1+4k → 1+k, 8× space
    assert data.fields["text"] == (TINY.text_length, TINY.text_dim)
    # latents are the VAE posterior means, normalised with the config's mean / std
    frames = read_video(videos / "video-0001.mp4", 5, 32, 32)
    x = frames.permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    with torch.no_grad():
        mu = vae.encode(x).latent_dist.mean[0].permute(1, 0, 2, 3)
    mean = torch.tensor([0.1, -0.2, 0.3, 0.0]).view(1, -1, 1, 1)
    std = torch.tensor([2.0, 1.0, 0.5, 1.5]).view(1, -1, 1, 1)
    torch.testing.assert_close(data.fetch([1])["latents"][0], (mu - mean) / std)
    torch.testing.assert_close(encode_video(frames, vae), (mu - mean) / std)
    # captions: zero past the prompt's tokens, like diffusers' WanPipeline
    caption = (videos / "video-0001.txt").read_text().strip()
    assert data.captions[1] == caption
    n_tokens = len(text.tokenizer(caption).input_ids)
    emb = data.fetch([1])["text"][0]
    assert emb[n_tokens:].abs().sum() == 0 and emb[:n_tokens].abs().sum() > 0
    assert data.negative.shape == (TINY.text_length, TINY.text_dim)


def test_latents_and_prompts(tmp_path, wan_folder):
    text = load_text_encoder(wan_folder, max_length=TINY.text_length)
    src = tmp_path / "latents"
    src.mkdir()
    stored = [torch.randn(3, 4, 2, 2) for _ in range(3)]
    for i, z in enumerate(stored):
        save_tensors(src / f"clip{i}.safetensors", {"latents": z})
        (src / f"clip{i}.txt").write_text(f"clip number {i}\n")
    data = TensorSet(prepare_latents(src, tmp_path / "set", text, shard_size=2), SetKind.LATENTS)
    assert torch.equal(data.fetch([2])["latents"][0], stored[2]) and data.captions[0] == "clip number 0"
    (tmp_path / "prompts.txt").write_text("a red disk moving up\na blue square moving left\n")
    prompts = TensorSet(prepare_prompts(tmp_path / "prompts.txt", tmp_path / "p", text, negative_prompt="bad"))
    assert prompts.kind is SetKind.PROMPTS and len(prompts) == 2
    torch.testing.assert_close(prompts.fetch([0])["text"][0], embed(text, ["a red disk moving up"])[0])
    torch.testing.assert_close(prompts.negative, embed(text, ["bad"])[0])


def test_bad_inputs_are_clear(tmp_path, wan_folder):
    text = load_text_encoder(wan_folder, max_length=TINY.text_length)
    vae = load_vae(wan_folder)
    videos = write_synthetic_videos(tmp_path / "v", count=1, frames=5, height=32, width=32)
    with pytest.raises(DataError, match="1 \\+ 4k video frames"):
        prepare_videos(videos, tmp_path / "o", vae, text, frames=6, height=32, width=32)
    with pytest.raises(DataError, match="has 5 frames, need at least 9"):
        prepare_videos(videos, tmp_path / "o", vae, text, frames=9, height=32, width=32)
    (videos / "video-0000.txt").unlink()
    with pytest.raises(DataError, match="no caption file"):
        prepare_videos(videos, tmp_path / "o", vae, text, frames=5, height=32, width=32)
    with pytest.raises(DataError, match="no vae folder"):
        load_vae(None, None)
    with pytest.raises(DataError, match="does not exist"):
        load_text_encoder(tmp_path / "nowhere")
    src = tmp_path / "lat"
    src.mkdir()
    save_tensors(src / "a.safetensors", {"other": torch.zeros(1)})
    (src / "a.txt").write_text("x")
    with pytest.raises(DataError, match="must hold a 'latents' tensor"):
        prepare_latents(src, tmp_path / "o2", text)
