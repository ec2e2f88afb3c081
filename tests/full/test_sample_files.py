"""``cf-ref full sample``'s library side: prompts, model sources, the folder it writes."""

from __future__ import annotations

import json

import pytest
import torch

from full.sample_files import ModelSource, open_models, read_prompts, sample_defaults, sample_to_folder
from full.sampler import SampleConfig, generate
from full.tiny import TINY
from full.video import read_mp4, to_uint8


def test_read_prompts(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("  a cat \n\n a dog\n", encoding="utf-8")
    assert read_prompts(None, path) == ["a cat", "a dog"]
    assert read_prompts("x", None) == ["x"]
    for prompt, file, message in [
        ("x", path, "exactly one"),
        (None, None, "exactly one"),
        ("   ", None, "empty"),
    ]:
        with pytest.raises(ValueError, match=message):
            read_prompts(prompt, file)
    path.write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no prompt"):
        read_prompts(None, path)
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_prompts(None, path)


def test_model_source_errors():
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="exactly one of --model DIR or --preset"):
        open_models(ModelSource(), cpu, torch.float32)
    with pytest.raises(ValueError, match="use it with --model"):
        open_models(ModelSource(preset="tiny", checkpoint="x.pt"), cpu, torch.float32)
    with pytest.raises(ValueError, match="unknown preset"):
        open_models(ModelSource(preset="huge"), cpu, torch.float32)


def test_sample_to_folder_writes_what_generate_makes(tiny_components, tmp_path):
    config = SampleConfig(height=TINY.height, width=TINY.width, block_size=3, num_frames=3, steps=1, seed=5)
    manifest = sample_to_folder(tiny_components, ["a cat", "a dog"], config, tmp_path, save_latents=True)
    assert json.loads((tmp_path / "samples.json").read_text()) == json.loads(json.dumps(manifest))
    assert [s["seed"] for s in manifest["samples"]] == [5, 6]
    ref = generate(
        tiny_components, tiny_components.text.encode(["a dog"]), SampleConfig(**{**manifest["config"], "seed": 6})
    )
    video = read_mp4(tmp_path / "001_a_dog.mp4")
    assert video.shape == to_uint8(ref.video[0]).shape
    # H.264 is lossy: the decoded MP4 stays close to the frames it was given
    assert abs(video.astype(float) - to_uint8(ref.video[0]).astype(float)).mean() < 12
    with pytest.raises(ValueError, match="fps"):
        sample_to_folder(tiny_components, ["a"], config, tmp_path / "x", fps=0)


def test_sample_defaults_are_the_presets_else_wans():
    wan = {"steps": 4, "block_size": 3, "num_frames": 21, "height": 480, "width": 832, "shift": 5.0, "fps": 16}
    assert sample_defaults(ModelSource(model_dir="Wan2.1")) == wan
    assert sample_defaults(ModelSource(preset="tiny")) == wan | {"height": TINY.height, "width": TINY.width}
    small = sample_defaults(ModelSource(preset="small"))
    assert small == wan | {"num_frames": 12, "height": 128, "width": 128, "shift": 1.0, "fps": 6}
