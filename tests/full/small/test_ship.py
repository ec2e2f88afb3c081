"""Shipping a small-track student as a model folder, and scoring sampled latents against prompts."""

from __future__ import annotations

import pytest
import torch

from cf_ref.io import save_tensors
from cf_ref.recipes import Recipe
from full.checkpoint import CheckpointError
from full.components import load_components
from full.config.layers import save_config
from full.model_files import ModelFolderError
from full.small.run import base_dir, run_config
from full.small.settings import SMOKE
from full.small.ship import MANIFEST, prompt_scene, read_manifest, score_latents, ship_student
from full.synthetic import BounceSpec, Scene, ShapeVideo, patch_encode, render_scene
from full.tiny import tiny_transformer


@pytest.fixture
def run(tmp_path):
    """A smoke-preset run folder: base model, resolved config, a student's weights (random, distinct)."""
    seed_dir = tmp_path / "seed-0"
    config = run_config(SMOKE, seed_dir, 0, Recipe.CAUSAL_FORCING, [])
    tiny_transformer(0, SMOKE.model).save_pretrained(base_dir(tmp_path) / "base-model")  # shared by the seeds
    student = tiny_transformer(1, SMOKE.model)
    save_tensors(seed_dir / "student.safetensors", student.state_dict())
    save_config(config, seed_dir / "causal-forcing" / "config.yaml")
    return seed_dir, student


def test_shipped_folder_loads_the_student_with_its_sampling_settings(run, tmp_path):
    seed_dir, student = run
    out = ship_student(
        seed_dir / "causal-forcing" / "config.yaml", seed_dir / "student.safetensors", SMOKE, tmp_path / "w", {"x": 1}
    )
    components = load_components(out)
    for name, tensor in student.state_dict().items():
        assert torch.equal(components.transformer.state_dict()[name], tensor), name
    manifest = read_manifest(out)
    assert manifest["source"] == {"x": 1}
    d = SMOKE.data
    assert manifest["sampling"] == {
        "height": d.pixels * 8,
        "width": d.pixels * 8,
        "frames": d.frames,
        "block_size": 3,
        "steps": 4,
        "shift": 1.0,
        "text_length": d.text_length,
        "fps": SMOKE.fps,
    }
    assert components.latent_shape(d.pixels * 8, d.pixels * 8) == (d.channels, d.pixels // d.patch, d.pixels // 2)


def test_bad_weights_leave_the_shipped_folder_as_it_was(run, tmp_path):
    seed_dir, _ = run
    config = seed_dir / "causal-forcing" / "config.yaml"
    out = ship_student(config, seed_dir / "student.safetensors", SMOKE, tmp_path / "w", {"first": True})
    save_tensors(seed_dir / "other.safetensors", tiny_transformer(2).state_dict())  # another model's shapes
    with pytest.raises(CheckpointError, match="small student .* do not fit the model"):
        ship_student(config, seed_dir / "other.safetensors", SMOKE, out, {"first": False})
    assert read_manifest(out)["source"] == {"first": True}
    assert sorted(p.name for p in out.parent.iterdir()) == ["base", "seed-0", "w"]  # no temporary left
    with pytest.raises(ModelFolderError, match=f"no {MANIFEST}"):
        read_manifest(tmp_path)


def test_scores_of_latents_against_their_prompts():
    spec = BounceSpec(count=1)
    video = ShapeVideo("square", "red", "left", (0.5, 0.6), 0.06, spec.size, motion="bounce")
    latents = patch_encode(render_scene(Scene((video,)), spec.frames, spec.pixels), spec.patch)[None]
    right = score_latents(latents, ["a red square moving left"], spec.patch, spec.size)
    assert right["follows_all"] == 1.0 and right["iou"] > 0.95 and right["bad_frames"] == 0.0
    assert score_latents(latents, ["a red disk moving left"], spec.patch, spec.size)["follows_shape"] == 0.0
    assert score_latents(latents, ["a blue square moving left"], spec.patch, spec.size)["follows_colour"] == 0.0
    assert score_latents(latents, ["a red square moving right"], spec.patch, spec.size)["follows_direction"] == 0.0
    assert prompt_scene("a red square moving left", 0.17).caption == "a red square moving left"
    with pytest.raises(ValueError, match="empty prompt"):
        prompt_scene("", 0.17)
