"""full.synthetic: the moving-shapes set has the structure its captions name."""

from __future__ import annotations

import pytest
import torch

from full.data import SetKind, TensorSet
from full.synthetic import (
    BACKGROUND,
    DIRECTIONS,
    WALL_RGB,
    BounceSpec,
    Scene,
    ShapeVideo,
    SyntheticSpec,
    backdrop_image,
    bounce_positions,
    embed_caption,
    palette,
    patch_decode,
    patch_encode,
    render_latents,
    render_rgb,
    render_scene,
    sample_bounce_scenes,
    sample_shape_videos,
    shape_centres,
    shape_masks,
    write_bounce_latents,
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


def _reflect_by_steps(start: float, velocity: float, lo: float, hi: float, frames: int, substeps: int = 1000):
    """Brute force: move in small steps; a step that leaves [lo, hi] is mirrored at the wall and the velocity flips."""
    p, v, out, dt = start, velocity, [], 1.0 / substeps
    for _ in range(frames):
        out.append(p)
        for _ in range(substeps):
            p += v * dt
            if p > hi or p < lo:
                wall = hi if p > hi else lo
                p, v = 2 * wall - p, -v
    return torch.tensor(out, dtype=torch.float64)


def test_bounce_positions_match_a_stepwise_reflection():
    for start, v in [(0.3, 0.17), (0.8, -0.23), (0.5, 0.9)]:
        exact = bounce_positions(start, v, 0.2, 0.8, 14)
        torch.testing.assert_close(exact, _reflect_by_steps(start, v, 0.2, 0.8, 14), atol=1e-9, rtol=0)


def test_bounce_scenes_stay_inside_the_walls_and_name_their_start_direction():
    scenes = sample_bounce_scenes(40, seed=2, objects=2)
    assert scenes == sample_bounce_scenes(40, seed=2, objects=2)
    for scene in scenes:
        assert len({o.colour for o in scene.objects}) == 2
        assert scene.caption == " and ".join(o.caption for o in scene.objects)
        for obj in scene.objects:
            cy, cx = shape_centres(obj, 12)
            assert obj.size - 1e-9 <= min(cy.min(), cx.min()) and max(cy.max(), cx.max()) <= 1 - obj.size + 1e-9
            dy, dx = DIRECTIONS[obj.direction]
            torch.testing.assert_close(cy[1] - cy[0], torch.tensor(dy * obj.speed, dtype=torch.float64))
            torch.testing.assert_close(cx[1] - cx[0], torch.tensor(dx * obj.speed, dtype=torch.float64))


def _steps_along_caption(scene) -> torch.Tensor:
    """Per frame step of the (one) object: +1 moving as captioned, -1 against (after a bounce)."""
    obj = scene.objects[0]
    dy, dx = DIRECTIONS[obj.direction]
    cy, cx = shape_centres(obj, 12)
    pos, sign = (cy, dy) if dy else (cx, dx)
    return torch.sign(pos[1:] - pos[:-1]) * sign


def test_behind_starts_put_the_shape_in_the_half_it_moves_away_from():
    anywhere = sample_bounce_scenes(400, seed=3, speed=(0.03, 0.05))
    behind = sample_bounce_scenes(400, seed=3, speed=(0.03, 0.05), start="behind")
    for a, b in zip(anywhere, behind):
        oa, ob = a.objects[0], b.objects[0]
        assert (oa.colour, oa.shape, oa.direction, oa.speed) == (ob.colour, ob.shape, ob.direction, ob.speed)
        dy, dx = DIRECTIONS[ob.direction]
        axis, d = (0, dy) if dy else (1, dx)
        assert ob.start[1 - axis] == oa.start[1 - axis]  # the other axis is untouched
        lo, hi = ob.size + 2 * ob.speed, 1 - ob.size - 2 * ob.speed
        rear = (lo, (lo + hi) / 2) if d > 0 else ((lo + hi) / 2, hi)
        assert rear[0] - 1e-12 <= ob.start[axis] <= rear[1] + 1e-12
        assert torch.all(_steps_along_caption(b)[:2] > 0)  # the first frames still show the direction
    along = {
        k: torch.stack([_steps_along_caption(s) for s in v]).gt(0).double().mean()
        for k, v in (("anywhere", anywhere), ("behind", behind))
    }
    assert along["behind"] > 0.85 and along["anywhere"] < 0.8, along  # measured 0.93 vs 0.71
    assert BounceSpec(count=5, seed=3, start="behind", speed=(0.03, 0.05)).scenes() == behind[:5]
    with pytest.raises(ValueError, match="start must be one of"):
        sample_bounce_scenes(2, seed=0, start="front")


def test_patch_code_is_exactly_inverted_and_the_background_is_zero():
    scene = sample_bounce_scenes(1, seed=0)[0]
    rgb = render_scene(scene, 3, 16)
    latents = patch_encode(rgb, 2)
    assert latents.shape == (3, 12, 8, 8)
    torch.testing.assert_close(patch_decode(latents, 2), rgb, atol=1e-6, rtol=0)
    for c, p1, p2, h, w in [(0, 0, 0, 0, 0), (2, 1, 0, 3, 5), (1, 1, 1, 7, 2)]:  # channel c·4 + p1·2 + p2
        assert latents[1, c * 4 + p1 * 2 + p2, h, w] == 2 * (rgb[1, 2 * h + p1, 2 * w + p2, c] - BACKGROUND)
    assert patch_encode(torch.full((1, 4, 4, 3), BACKGROUND), 2).abs().max() == 0


def test_written_bounce_set_holds_the_patch_coded_scenes(tmp_path):
    spec = BounceSpec(count=3, frames=4, pixels=8, patch=2, text_length=6, text_dim=4, seed=1)
    data = TensorSet(write_bounce_latents(tmp_path / "b", spec, shard_size=2), SetKind.LATENTS)
    scenes = spec.scenes()
    assert data.captions == [s.caption for s in scenes]
    item = data.fetch([2])
    assert torch.equal(item["latents"][0], patch_encode(render_scene(scenes[2], 4, 8), 2))
    assert torch.equal(item["text"][0], embed_caption(scenes[2].caption, 6, 4))


def test_walls_are_a_still_ring_under_the_shapes():
    pixels, frames = 16, 12
    back = backdrop_image("walls", pixels)
    wall = torch.tensor(WALL_RGB) / 255.0
    ring = torch.zeros(pixels, pixels, dtype=torch.bool)
    ring[0], ring[-1], ring[:, 0], ring[:, -1] = True, True, True, True
    assert torch.equal(back[ring], wall.expand(int(ring.sum()), 3))
    assert (back[~ring] == BACKGROUND).all()
    assert (backdrop_image("plain", pixels) == BACKGROUND).all()
    # a shape bouncing off the left wall, composited over it: walls + α (colour - walls), α the shape's occupancy
    obj = ShapeVideo("square", "red", "left", (0.5, 0.3), 0.05, 0.17, motion="bounce")
    alpha = shape_masks(obj, frames, pixels, pixels, 0.35)[..., None]
    expected = back + alpha * (palette("red") - back)
    torch.testing.assert_close(render_scene(Scene((obj,)), frames, pixels, backdrop="walls"), expected)
    assert alpha[:, :, 0].max() > 0.5  # it does touch the wall


def test_walls_set_and_bad_backdrop(tmp_path):
    spec = BounceSpec(count=2, frames=4, pixels=8, text_length=6, text_dim=4, seed=1, backdrop="walls")
    data = TensorSet(write_bounce_latents(tmp_path / "b", spec), SetKind.LATENTS)
    scene = spec.scenes()[1]
    assert torch.equal(data.fetch([1])["latents"][0], patch_encode(render_scene(scene, 4, 8, backdrop="walls"), 2))
    with pytest.raises(ValueError, match="backdrop must be one of"):
        BounceSpec(backdrop="gradient")
    with pytest.raises(ValueError, match="backdrop must be one of"):
        backdrop_image("none", 8)
