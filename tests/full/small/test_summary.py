"""full.small.summary.check_base: each item of the stated tolerance, at and just past its edge."""

from __future__ import annotations

from full.small.summary import check_base

DATA = {"dynamic_degree": 0.8, "physics_error": 0.02, "iou": 0.99, "bad_frames": 0.0, "follows_all": 1.0}


def test_the_data_passes_against_itself_and_each_item_fails_past_its_edge():
    assert all(check_base(DATA, DATA).values())
    edge = {"dynamic_degree": 0.8 * 1.15, "physics_error": 0.52, "iou": 0.89, "bad_frames": 0.05, "follows_all": 0.9}
    assert all(check_base({**DATA, **edge}, DATA).values())
    past = {"dynamic_degree": 0.8 * 0.84, "physics_error": 0.53, "iou": 0.88, "bad_frames": 0.06, "follows_all": 0.89}
    for key, value in past.items():
        result = check_base({**DATA, key: value}, DATA)
        assert [k for k, ok in result.items() if not ok] == [key], key
