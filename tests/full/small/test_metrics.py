"""full.small.metrics: each metric on hand-made videos whose answer is known."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from full.small.metrics import (
    direction_of,
    energy_distance,
    fit_bounce,
    score_video,
    score_videos,
)
from full.synthetic import Scene, ShapeVideo, bounce_positions, render_scene, sample_bounce_scenes, shape_centres

FRAMES, PIXELS = 12, 16


def _scene(colour="red", shape="square", direction="left", start=(0.5, 0.6), speed=0.05) -> Scene:
    return Scene((ShapeVideo(shape, colour, direction, start, speed, 0.17, motion="bounce"),))


def test_bounce_fit_recovers_start_and_velocity():
    frames = torch.arange(12, dtype=torch.float64)
    for p0, v in [(5.0, 0.9), (11.0, -1.3), (3.2, 0.0)]:
        pos = bounce_positions(p0, v, 2.7, 13.3, 12)
        got_p, got_v, resid = fit_bounce(pos, frames, 2.7, 13.3, vmax=4.0)
        assert abs(got_p - p0) < 1e-3 and abs(got_v - v) < 1e-3 and resid.abs().max() < 1e-2


def test_a_perfect_rendering_scores_perfectly():
    scene = _scene()  # starts mid-frame, moves left 0.8 px per frame, bounces off the left wall
    (obj,) = score_video(render_scene(scene, FRAMES, PIXELS), scene)
    assert obj.iou > 0.99 and obj.bad_frames == 0 and obj.present == 1
    assert obj.physics_error < 0.05
    true_x = shape_centres(scene.objects[0], FRAMES)[1] * PIXELS
    assert abs(obj.speed - float((true_x[1:] - true_x[:-1]).abs().mean())) < 0.02  # shorter steps at the bounce
    assert abs(obj.velocity[1] + 0.05 * PIXELS) < 0.01 and abs(obj.velocity[0]) < 0.01
    assert (obj.shape, obj.direction) == ("square", "left")


def test_data_scores_as_data_and_a_fresh_data_set_is_within_the_noise_floor():
    sets = []
    for seed in (0, 1):
        scenes = sample_bounce_scenes(24, seed=seed)
        sets.append((scenes, torch.stack([render_scene(s, FRAMES, PIXELS) for s in scenes])))
    (scenes, rgb), (fresh_scenes, fresh) = sets
    data = score_videos(rgb, scenes)
    s = data.summary()
    assert s["follows_all"] == 1 and s["bad_frames"] == 0 and s["iou"] > 0.97 and s["physics_error"] < 0.1
    floor = score_videos(fresh, fresh_scenes).summary(data.features)["energy_distance"]
    frozen = score_videos(rgb[:, :1].expand_as(rgb), scenes).summary(data.features)["energy_distance"]
    assert abs(floor) < 0.5 and frozen > 20 * max(abs(floor), 0.05)


def test_a_frozen_video_has_zero_dynamic_degree_and_fails_direction():
    scenes = sample_bounce_scenes(6, seed=1)
    rgb = torch.stack([render_scene(s, FRAMES, PIXELS) for s in scenes])
    frozen = rgb[:, :1].expand_as(rgb)
    s = score_videos(frozen, scenes).summary()
    assert s["dynamic_degree"] == 0 and s["follows_direction"] == 0 and s["follows_colour"] == 1


def test_a_wrong_colour_or_shape_fails_instruction_following():
    asked = _scene(colour="red", shape="square")
    for drawn, failed in [(_scene(colour="blue"), "colour"), (_scene(shape="disk"), "shape")]:
        scores = score_videos(render_scene(drawn, FRAMES, PIXELS)[None], [asked])
        assert scores.follows[0][failed] is False and scores.follows[0]["all"] is False
    right = score_videos(render_scene(asked, FRAMES, PIXELS)[None], [asked])
    assert right.follows[0]["all"] is True


def test_blur_lowers_iou_and_a_duplicate_or_a_gap_counts_as_bad_frames():
    scene = _scene(start=(0.5, 0.5), speed=0.0)
    rgb = render_scene(scene, FRAMES, PIXELS)
    x = rgb.permute(0, 3, 1, 2)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), torch.ones(3, 1, 3, 3) / 9, groups=3)
    (sharp,), (soft,) = score_video(rgb, scene), score_video(blurred.permute(0, 2, 3, 1), scene)
    assert soft.iou < sharp.iou - 0.1
    twice = torch.maximum(rgb, render_scene(_scene(start=(0.2, 0.2), speed=0.0), FRAMES, PIXELS))  # 2 red squares
    broken = rgb.clone()
    broken[:3] = 0.5  # object gone in 3 frames
    assert score_video(twice, scene)[0].bad_frames == 1
    assert abs(score_video(broken, scene)[0].bad_frames - 3 / FRAMES) < 1e-9


def test_direction_names_and_energy_distance_against_closed_forms():
    assert [direction_of(v) for v in [(0.0, 1.0), (0.0, -1.0), (2.0, 0.5), (-2.0, 0.5), (0.01, 0.0)]] == [
        "right",
        "left",
        "down",
        "up",
        "static",
    ]
    a, b = torch.zeros(5, 2), torch.tensor([[3.0, 4.0]]).expand(7, 2)
    assert abs(energy_distance(a, b) - 2 * 5.0) < 1e-9  # point masses: 2|a - b|
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    brute = (
        2 * sum((xi - yj).norm() for xi in x for yj in x[:20]) / (50 * 20)
        - sum((xi - xj).norm() for xi in x for xj in x) / (50 * 49)
        - sum((yi - yj).norm() for yi in x[:20] for yj in x[:20]) / (20 * 19)
    )
    assert abs(energy_distance(x, x[:20]) - float(brute)) < 1e-5


def test_a_rendering_with_the_walls_drawn_scores_as_without():
    scene = _scene(start=(0.5, 0.3))  # bounces off the left wall, over the drawn ring
    plain = score_video(render_scene(scene, FRAMES, PIXELS), scene)[0]
    (obj,) = score_video(render_scene(scene, FRAMES, PIXELS, backdrop="walls"), scene)
    assert obj.bad_frames == 0 and obj.present == 1 and (obj.shape, obj.direction) == ("square", "left")
    assert abs(obj.iou - plain.iou) < 0.01 and obj.physics_error < 0.05 and abs(obj.speed - plain.speed) < 0.02
