"""The shipped small student (``--preset small``): sampled end to end on the CPU by every surface, scored by the
small track's detector, and compared with the same architecture at random weights."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from einops import rearrange

from cf_ref.cli import main
from full.components import WanComponents, load_preset
from full.model import CausalWanTransformer3DModel
from full.pipeline_diffusers import CausalForcingPipeline
from full.sample_files import preset_config
from full.sampler import generate
from full.small.settings import SMALL
from full.small.ship import score_latents
from full.stream import VideoStream
from full.synthetic import COLOURS, DIRECTIONS, SHAPES
from full.video import read_mp4

PROMPTS = [f"a {c} {s} moving {d}" for c, s, d in itertools.product(COLOURS, SHAPES, DIRECTIONS)]
SEEDS = (0, 1)
# The shipped student on PROMPTS × SEEDS (measured, CPU): IoU 0.38, bad frames 0.59, direction 0.109 (7 of 64),
# all three of colour / shape / direction 0.062 (4 of 64). The same DiT at random weights (3 seeds): IoU 0.08, bad
# frames 0.99, direction ≤ 0.047, all ≤ 0.016. The bounds sit between, with room for float differences between
# machines (docs/small.md, "Sample the shipped student").
BOUNDS = {"iou": 0.3, "follows_direction": 0.07, "follows_all": 0.03}
BAD_FRAMES_AT_MOST = 0.75


@pytest.fixture(scope="module")
def small():
    return load_preset("small")


def scores(components: WanComponents, preset) -> dict[str, float]:
    """Detector scores over PROMPTS × SEEDS (means over seeds)."""
    out = []
    for seed in SEEDS:
        result = generate(components, components.text.encode(PROMPTS), preset_config(preset, seed=seed), decode=False)
        out.append(score_latents(result.latents, PROMPTS, SMALL.data.patch, SMALL.data.size))
    return {k: sum(o[k] for o in out) / len(out) for k in out[0]}


def passes(s: dict[str, float]) -> bool:
    return all(s[k] >= v for k, v in BOUNDS.items()) and s["bad_frames"] <= BAD_FRAMES_AT_MOST


def test_shipped_student_reaches_its_measured_scores(small):
    components, preset = small
    s = scores(components, preset)
    assert passes(s), s


def test_random_weights_fail_the_same_bounds(small):
    components, preset = small
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        random = CausalWanTransformer3DModel.from_config(components.transformer.config).eval()
    s = scores(WanComponents(random, components.vae, components.text), preset)
    assert (
        s["iou"] < BOUNDS["iou"] and s["bad_frames"] > BAD_FRAMES_AT_MOST and s["follows_all"] < BOUNDS["follows_all"]
    ), s


def test_cli_sample_writes_the_video_the_latents_decode_to(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square moving left\na blue disk moving up\n", encoding="utf-8")
    args = ["full", "sample", "--preset", "small", "--prompts", str(prompts), "--save-latents", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "12 frames" in result.output
    from safetensors.torch import load_file

    _, preset = load_preset("small")
    for name in ("000_a_red_square_moving_left", "001_a_blue_disk_moving_up"):
        video = read_mp4(tmp_path / f"{name}.mp4")
        assert video.shape == (12, preset.height, preset.width, 3)
        latents = load_file(str(tmp_path / f"{name}.safetensors"))["latents"]  # [F, C, h, w], the patch code
        assert latents.shape == (12, SMALL.data.channels, 8, 8)
        rgb = rearrange(latents.clamp(-1, 1), "f (c p1 p2) h w -> f (h p1) (w p2) c", c=3, p1=2, p2=2)
        shown = ((rgb + 1) * 127.5).repeat_interleave(8, 1).repeat_interleave(8, 2).numpy()
        assert np.abs(video.astype(float) - shown).mean() < 8  # H.264 is lossy; the MP4 shows the sample


def test_cli_options_override_the_presets_settings(tmp_path):
    args = ["full", "sample", "--preset", "small", "--prompt", "a red disk moving up", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, [*args, "--frames", "6", "--steps", "2", "--shift", "3", "--fps", "4"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "samples.json").read_text())["config"]
    assert (config["num_frames"], config["steps"], config["shift"], config["height"]) == (6, 2, 3.0, 128)
    assert read_mp4(tmp_path / "000_a_red_disk_moving_up.mp4").shape[0] == 6


def test_cli_refuses_a_prompt_outside_the_grammar_before_writing(tmp_path):
    result = CliRunner().invoke(
        main, ["full", "sample", "--preset", "small", "--prompt", "a cat", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1 and "Error: unknown word 'cat'" in result.output, result.output
    assert "Traceback" not in result.output and not list(tmp_path.iterdir())
    helped = CliRunner().invoke(main, ["full", "sample", "--help"])
    assert "small" in helped.output


def test_stream_and_diffusers_pipeline_give_the_samplers_frames(small):
    components, preset = small
    prompt = "a green disk moving right"
    config = preset_config(preset, seed=3)
    reference = generate(components, components.text.encode([prompt]), config)
    stream = VideoStream(components, prompt, preset_config(preset, seed=3, num_frames=preset.block_size), max_blocks=4)
    blocks = list(stream)
    stream.close()
    torch.testing.assert_close(torch.cat([b.latents for b in blocks], 1), reference.latents, rtol=0, atol=1e-6)
    pipe = CausalForcingPipeline.from_preset("small")
    assert pipe.config.shift == preset.shift
    frames = pipe(prompt, num_frames=12, generator=torch.Generator().manual_seed(3), output_type="pt").frames
    torch.testing.assert_close(frames[0], (reference.video[0] + 1) / 2, rtol=0, atol=1e-5)
