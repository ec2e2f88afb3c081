"""full.small.summary.check_base: each item of the stated tolerance, at and just past its edge."""

from __future__ import annotations

from full.small.summary import base_check_line, check_base

DATA = {"dynamic_degree": 0.8, "physics_error": 0.02, "iou": 0.99, "bad_frames": 0.0, "follows_all": 1.0}


def test_the_data_passes_against_itself_and_each_item_fails_past_its_edge():
    assert all(check_base(DATA, DATA).values())
    edge = {"dynamic_degree": 0.8 * 1.15, "physics_error": 0.52, "iou": 0.89, "bad_frames": 0.05, "follows_all": 0.9}
    assert all(check_base({**DATA, **edge}, DATA).values())
    past = {"dynamic_degree": 0.8 * 0.84, "physics_error": 0.53, "iou": 0.88, "bad_frames": 0.06, "follows_all": 0.89}
    for key, value in past.items():
        result = check_base({**DATA, key: value}, DATA)
        assert [k for k, ok in result.items() if not ok] == [key], key


def test_base_check_line_names_exactly_the_failed_items():
    data = {"dynamic_degree": 0.6, "physics_error": 0.03, "iou": 0.99, "bad_frames": 0.0, "follows_all": 1.0}
    scores = {"follows_colour": 1.0, "follows_shape": 1.0, "follows_direction": 0.25, "energy_distance": 12.0}
    good = dict(data, **scores, follows_all=0.95)
    assert base_check_line(good, data).endswith("failed: none")
    bad = dict(good, iou=0.5, follows_all=0.25)
    line = base_check_line(bad, data)
    assert "IoU 0.500" in line and line.endswith("failed: iou, follows_all")
