"""full.model_files: a model folder is checked before it is loaded — one clear error per broken folder, on the
command line one line (``--model`` of ``sample``, ``model.path`` / the base model of ``train``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from cf_ref.cli import main
from full.convert import diffusers_to_original
from full.model_files import ModelFolderError, check_safetensors, check_transformer, check_vae, load_transformer
from full.tiny import tiny_transformer, tiny_vae, write_tiny_pipeline


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return Path(write_tiny_pipeline(str(tmp_path_factory.mktemp("models") / "wan")))


def _broken(tmp_path, pipeline, how: str):
    """A copy of the tiny pipeline folder with its transformer broken in one way."""
    folder = tmp_path / how
    shutil.copytree(pipeline, folder)
    weights = next((folder / "transformer").glob("*.safetensors"))
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif how == "garbage":
        weights.write_bytes(bytes(range(256)) * 12)
    elif how == "config":
        (folder / "transformer" / "config.json").write_text("{not json")
    elif how == "latin1-config":
        (folder / "transformer" / "config.json").write_bytes(b'{"_class_name": "caf\xe9"}')
    elif how == "vae":
        shutil.rmtree(folder / "transformer")
        shutil.copytree(folder / "vae", folder / "transformer")
    elif how == "original":
        state = diffusers_to_original(tiny_transformer(seed=0).state_dict())
        weights.unlink()
        save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    return folder


CASES = [
    ("truncated", "is truncated"),
    ("garbage", "not a readable safetensors file"),
    ("config", "config.json is not valid JSON"),
    ("latin1-config", "config.json is not UTF-8 text"),
    ("vae", "holds a AutoencoderKLWan, not a Wan transformer"),
    ("original", "original-layout Wan weights; convert them with `cf-ref full convert`"),
]


@pytest.mark.parametrize(("how", "message"), CASES)
def test_broken_transformer_folders_are_named(tmp_path, pipeline, how, message):
    folder = _broken(tmp_path, pipeline, how)
    with pytest.raises(ModelFolderError, match=message):
        check_transformer(folder, "model.path")
    with pytest.raises(ModelFolderError, match=message):
        load_transformer(folder / "transformer", "model.path")


def test_a_good_folder_loads_and_reports_its_config(pipeline):
    config = check_transformer(pipeline, "model.path")  # a pipeline folder: its transformer/
    assert config["in_channels"] == tiny_transformer().config.in_channels
    model = load_transformer(pipeline, "model.path")
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), tiny_transformer(seed=0).state_dict().values())
    )
    assert check_vae(pipeline, "logging.vae")["_class_name"] == "AutoencoderKLWan"
    assert "patch_embedding.weight" in check_safetensors(next((pipeline / "transformer").glob("*.safetensors")))


def test_a_vae_folder_is_checked_like_a_transformer(tmp_path):
    tiny_vae(seed=1).save_pretrained(tmp_path / "vae")
    (tmp_path / "vae" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ModelFolderError, match="holds a UNet2DModel, not a Wan VAE"):
        check_vae(tmp_path / "vae", "logging.vae")


@pytest.mark.parametrize(("how", "message"), CASES)
def test_sample_with_a_broken_model_is_one_line(tmp_path, pipeline, how, message):
    folder = _broken(tmp_path, pipeline, how)
    args = ["full", "sample", "--model", str(folder), "--prompt", "x", "--out", str(tmp_path / "out"), "--frames", "3"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 1 and message in result.output
    assert result.output.startswith("Error: ") and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_train_with_a_broken_base_model_stops_before_anything_is_written(tmp_path, pipeline):
    folder = _broken(tmp_path, pipeline, "garbage")
    out = tmp_path / "run"
    args = [
        "full",
        "train",
        "--out",
        str(out),
        f"model.path={folder}",
        "data.latents=/nowhere",
        "video.latent_frames=3",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert (
        result.exit_code == 1
        and "not a readable safetensors file" in result.output
        and "Traceback" not in result.output
    )
    assert not out.exists()
