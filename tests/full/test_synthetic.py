"""full.synthetic: the moving-shapes set has the structure its captions name."""

from __future__ import annotations

import torch

from full.data import SetKind, TensorSet
from full.synthetic import (
    SyntheticSpec,
    embed_caption,
    render_latents,
    render_rgb,
    sample_shape_videos,
    shape_masks,
    write_synthetic_latents,
)


def test_synthetic_video_is_a_translation_on_the_torus():
    video = sample_shape_videos(4, seed=3)[1]
    masks = shape_masks(video, frames=5, height=16, width=16)
    dy, dx = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}[video.direction]
    shift = round(video.speed * 16)  # speed 1/8 of the frame = 2 px per frame on 16 px
    for f in range(1, 5):
        expected = torch.roll(masks[0], shifts=(dy * shift * f, dx * shift * f), dims=(0, 1))
        torch.testing.assert_close(masks[f], expected, atol=1e-5, rtol=0)
    latents = render_latents(video, 5, 3, 16, 16)
    assert latents.shape == (5, 3, 16, 16)
    rgb = render_rgb(video, 5, 16, 16)
    assert rgb.shape == (5, 16, 16, 3) and rgb.dtype.name == "uint8"


def test_captions_name_the_structure_and_embed_deterministically():
    videos = sample_shape_videos(32, seed=0)
    assert videos == sample_shape_videos(32, seed=0)
    assert {v.shape for v in videos} == {"square", "disk"}
    assert all(v.caption == f"a {v.colour} {v.shape} moving {v.direction}" for v in videos)
    e = embed_caption("a red disk moving up", 8, 16)
    assert e.shape == (8, 16) and torch.equal(e, embed_caption("a red disk moving up", 8, 16))
    assert e[5:].abs().sum() == 0 and e[:5].abs().sum() > 0  # 5 words, zero padding
    assert torch.equal(e[1], embed_caption("red", 8, 16)[0])  # one vector per word


def test_written_set_holds_the_rendered_videos_and_their_captions(tmp_path):
    spec = SyntheticSpec(count=3, frames=2, channels=3, height=8, width=8, text_length=6, text_dim=4, seed=1)
    data = TensorSet(write_synthetic_latents(tmp_path / "s", spec, shard_size=2), SetKind.LATENTS)
    videos = sample_shape_videos(3, seed=1)
    assert data.captions == [v.caption for v in videos]
    item = data.fetch([2])
    assert torch.equal(item["latents"][0], render_latents(videos[2], 2, 3, 8, 8))
    assert torch.equal(item["text"][0], embed_caption(videos[2].caption, 6, 4))
    assert torch.equal(data.negative, embed_caption("", 6, 4))  # the empty caption as negative prompt
