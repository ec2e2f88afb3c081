"""full.small.detect: colour membership, centroid and soft IoU against hand-made frames."""

from __future__ import annotations

import torch

from full.small.detect import components, detect, membership
from full.synthetic import BACKGROUND, COLOURS, WALL_RGB, Scene, ShapeVideo, backdrop_image, palette, render_scene


def test_membership_is_the_blend_weight_of_the_nearest_palette_colour():
    rgb = torch.full((1, 2, 2, 3), BACKGROUND)
    for (i, j), (colour, a) in {(0, 0): ("red", 1.0), (0, 1): ("blue", 0.5), (1, 0): ("yellow", 0.3)}.items():
        rgb[0, i, j] = a * palette(colour) + (1 - a) * BACKGROUND
    maps = membership(rgb)
    expected = torch.zeros(len(COLOURS), 1, 2, 2)
    expected[COLOURS.index("red"), 0, 0, 0] = 1.0
    expected[COLOURS.index("blue"), 0, 0, 1] = 0.5
    expected[COLOURS.index("yellow"), 0, 1, 0] = 0.3
    torch.testing.assert_close(maps, expected, atol=1e-5, rtol=0)


def test_detection_finds_the_rendered_centre_and_counts_components():
    obj = ShapeVideo("disk", "green", "up", (0.4, 0.55), 0.0, 0.17, motion="bounce")
    det = detect(render_scene(Scene((obj,)), 2, 16), "green", "disk", 0.17 * 16)
    torch.testing.assert_close(
        det.centre[0],
        torch.tensor([0.4 * 16, 0.55 * 16], dtype=torch.float64),
        atol=0.02,
        rtol=0,  # pixel sampling of the edge
    )
    assert not det.missing.any() and not det.duplicated.any() and det.iou.min() > 0.99
    mask = torch.zeros(1, 6, 6, dtype=torch.bool)
    mask[0, :2, :2] = mask[0, 4:, 4:] = True
    mask[0, 0, 5] = True  # a single pixel does not count
    assert components(mask).tolist() == [2]


def test_the_walls_are_never_a_shape():
    wall = torch.tensor(WALL_RGB) / 255.0
    a = torch.linspace(0, 1, 21)[:, None]
    blends = (a * wall + (1 - a) * BACKGROUND).reshape(1, 21, 1, 3)  # the wall faded into the grey, every α
    assert membership(blends).abs().max() == 0
    assert membership(backdrop_image("walls", 16)[None]).abs().max() == 0
    d = torch.stack([palette(c) - BACKGROUND for c in COLOURS])
    assert ((d @ (wall - BACKGROUND)) / (d * d).sum(1)).max() < 0.05  # its blend weight on any palette colour
