"""full.run_changes: which changed settings a re-run of a run folder accepts, and why the others are refused."""

from __future__ import annotations

import pytest

from full.config import build_config
from full.recipes import Stage
from full.run_changes import review_changes, stages_using

SAVED = build_config(preset="tiny", out="/runs/a", overrides=["data.latents=/data/latents"])


def _review(*overrides: str, finished=(), started=(), out="/runs/a"):
    new = build_config(preset="tiny", out=out, overrides=["data.latents=/data/latents", *overrides])
    return review_changes(SAVED, new, set(finished), set(started))


def test_settings_belong_to_their_stages():
    assert stages_using("dmd.guidance_scale") == {Stage.DMD}
    assert stages_using("ode_pairs.teacher") == {Stage.ODE_PAIRS}
    assert stages_using("model.block_size") == set(Stage)
    assert stages_using("recipe") == set(Stage) - {Stage.AR_DIFFUSION}


@pytest.mark.parametrize(
    ("override", "why"),
    [
        ("dmd.real_score_path=/models/wan-14b", "a path"),
        ("data.latents=/moved/latents", "a path"),
        ("logging.vae=/models/vae", "a path"),
        ("logging.sample_every=10", "how the run is carried out"),
        ("ar_diffusion.loop.checkpoint_every=7", "how the run is carried out"),
        ("parallel.gradient_checkpointing=true", "how the run is carried out"),
        ("dmd.guidance_scale=3.5", "only stages that have not started use it"),
        ("ode.loop.steps=9", "stage ode has not finished"),
    ],
)
def test_changes_that_do_not_alter_finished_work_are_accepted(override, why):
    review = _review(override, finished=[Stage.AR_DIFFUSION, Stage.ODE_PAIRS], started=[Stage.ODE])
    assert review.refused == [] and len(review.accepted) == 1 and why in review.accepted[0]


@pytest.mark.parametrize(
    ("override", "why"),
    [
        ("model.block_size=1", "stage(s) ar-diffusion, ode-pairs, ode already ran with the old value"),
        ("ar_diffusion.optim.lr=2e-6", "stage(s) ar-diffusion already ran"),
        ("schedule.shift=3", "already ran"),
        ("seed=1", "already ran"),
        ("ode.optim.lr=1e-5", "stage(s) ode already ran"),  # started, not finished: its checkpoints used it
        ("ar_diffusion.loop.steps=9", "stage ar-diffusion has finished with the old value"),
    ],
)
def test_changes_to_work_already_done_are_refused_with_the_reason(override, why):
    review = _review(override, finished=[Stage.AR_DIFFUSION, Stage.ODE_PAIRS], started=[Stage.ODE])
    assert len(review.refused) == 1 and why in review.refused[0], review.refused


def test_a_moved_run_is_the_same_run():
    """Its own paths moved with it; only the location differs, which is not a change."""
    saved = build_config(preset="tiny", out="/runs/a", overrides=["data.latents=/runs/a/data/latents"])
    moved = build_config(preset="tiny", out="/disk2/a", overrides=["data.latents=/disk2/a/data/latents"])
    assert review_changes(saved, moved, set(Stage), set(Stage)).accepted == []
