"""Weight conversion: original Wan2.1 / Self-Forcing generator layouts ↔ diffusers (tiny random weights)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from diffusers import WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

from cf_ref.cli import main
from cf_ref.masks import AttentionMode
from full.architectures import ARCHITECTURES, UnsupportedArchitecture
from full.checkpoint_files import ConvertError, load_state_dict
from full.convert import (
    check_architecture,
    convert_checkpoint,
    detect_layout,
    diffusers_to_original,
    infer_config,
    original_to_diffusers,
    strip_wrappers,
)
from full.model import CausalWanTransformer3DModel
from full.tiny import TINY, TINY_ARCHITECTURES, tiny_transformer, transformer_kwargs

WAN_1_3B = dict(
    patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
)  # fmt: skip


@pytest.fixture(scope="module")
def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_round_trip_is_exact_and_names_are_the_original_ones(state):
    original = diffusers_to_original(state)
    assert detect_layout(original) == "original" and detect_layout(state) == "diffusers"
    for name in ("blocks.1.self_attn.o.weight", "blocks.0.norm3.bias", "blocks.0.ffn.2.weight", "head.modulation",
                 "time_projection.1.weight", "text_embedding.2.bias", "blocks.1.modulation"):  # fmt: skip
        assert name in original
    back = original_to_diffusers(original)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_mapping_agrees_with_diffusers_single_file_converter(state):
    original = diffusers_to_original(state)
    reference = convert_wan_transformer_to_diffusers(dict(original))
    mine = original_to_diffusers(original)
    assert mine.keys() == reference.keys()
    assert all(torch.equal(mine[k], reference[k]) for k in mine)


def test_config_is_read_off_the_shapes():
    assert infer_config(original_to_diffusers(diffusers_to_original(_meta_state(TINY_KW))), TINY.head_dim) == _cfg(
        TINY_KW
    )
    assert infer_config(_meta_state(WAN_1_3B)) == _cfg(WAN_1_3B)


TINY_KW = {k: v for k, v in transformer_kwargs().items() if k in WAN_1_3B}


def _meta_state(kwargs: dict) -> dict:
    with torch.device("meta"):
        return WanTransformer3DModel(**kwargs).state_dict()


def _cfg(kwargs: dict) -> dict:
    return {k: kwargs[k] for k in WAN_1_3B}


def test_generator_checkpoint_converts_to_a_loadable_folder(model, state, tmp_path, latents, text):
    original = diffusers_to_original(state)
    fsdp = {f"model._fsdp_wrapped_module.{k}": v for k, v in original.items()}
    ema = {f"model.{k}": torch.zeros_like(v) for k, v in original.items()}
    torch.save({"generator": fsdp, "generator_ema": ema, "step": torch.tensor(3)}, tmp_path / "ckpt.pt")
    out = convert_checkpoint(tmp_path / "ckpt.pt", tmp_path / "converted", key="generator", head_dim=TINY.head_dim)
    loaded = CausalWanTransformer3DModel.from_pretrained(out).eval()
    assert loaded.config.num_layers == TINY.num_layers and loaded.config.num_attention_heads == TINY.num_heads
    with torch.no_grad():
        ref = model.velocity(latents, 0.4, text, mode=AttentionMode.BLOCK_CAUSAL, block_size=3)
        torch.testing.assert_close(
            loaded.velocity(latents, 0.4, text, mode=AttentionMode.BLOCK_CAUSAL, block_size=3), ref
        )
    ema_state = strip_wrappers(load_state_dict(tmp_path / "ckpt.pt", key="generator_ema"))
    assert all(not v.any() for v in ema_state.values())
    with pytest.raises(ConvertError, match="entries"):
        load_state_dict(tmp_path / "ckpt.pt", key="critic")
    with pytest.raises(ConvertError, match="not empty"):
        convert_checkpoint(tmp_path / "ckpt.pt", tmp_path / "converted", head_dim=TINY.head_dim)


def test_unknown_keys_and_missing_files_fail_clearly(state, tmp_path):
    bad = diffusers_to_original(state) | {"img_emb.proj.0.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="image-to-video"):
        original_to_diffusers(bad)
    with pytest.raises(ValueError, match="not a Wan DiT"):
        detect_layout({"foo.weight": torch.zeros(1)})
    with pytest.raises(FileNotFoundError):
        load_state_dict(tmp_path / "missing.pt")


def test_convert_cli(state, tmp_path):
    from safetensors.torch import save_file

    save_file(diffusers_to_original(state), str(tmp_path / "wan.safetensors"))
    runner = CliRunner()
    args = ["full", "convert", "--input", str(tmp_path / "wan.safetensors"), "--out", str(tmp_path / "out")]
    result = runner.invoke(main, [*args, "--head-dim", str(TINY.head_dim)])
    assert result.exit_code == 0, result.output
    reloaded = CausalWanTransformer3DModel.from_pretrained(tmp_path / "out").state_dict()
    assert all(torch.equal(reloaded[k], state[k]) for k in state)
    result = runner.invoke(main, [*args[:-1], str(tmp_path / "out2"), "--head-dim", "7"])
    assert result.exit_code != 0 and "not a multiple of head_dim" in result.output


def _generator_checkpoint(state, path, drop=()):
    original = {f"model.{k}": v for k, v in diffusers_to_original(state).items() if not k.startswith(drop)}
    torch.save({"generator": original, "step": 3}, path)


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        ("truncated", [], "is not a readable PyTorch checkpoint (truncated or another format?)"),
        ("no-head", [], "lacks the output head (proj_out / head.head)"),
        ("missing-block-keys", [], "does not make a complete Wan DiT: missing ['blocks.1."),
        ("good", ["--key", "critic"], "training checkpoint with entries ['generator']; choose one"),
        ("good", ["--head-dim", "0"], "Invalid value for '--head-dim': 0 is not in the range x>=1"),
        ("text", [], "is not a readable PyTorch checkpoint"),
    ],
)
def test_convert_failures_are_one_line(state, tmp_path, make, args, message):
    src = tmp_path / "ckpt.pt"
    if make == "truncated":
        _generator_checkpoint(state, src)
        src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    elif make == "no-head":
        _generator_checkpoint(state, src, drop=("head.",))
    elif make == "missing-block-keys":
        _generator_checkpoint(state, src, drop=("blocks.1.ffn.",))
    elif make == "text":
        src.write_text("not a checkpoint at all\n")
    else:
        _generator_checkpoint(state, src)
    args = args if "--head-dim" in args else [*args, "--head-dim", str(TINY.head_dim)]
    result = CliRunner().invoke(main, ["full", "convert", "--input", str(src), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code in (1, 2) and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]  # no temporary folder left


def test_head_dim_zero_in_the_library_is_a_clear_error(state):
    with pytest.raises(ConvertError, match="head_dim must be >= 1"):
        infer_config(state, head_dim=0)


def test_converted_folder_follows_the_umask(state, tmp_path):
    import os

    from safetensors.torch import save_file

    save_file(diffusers_to_original(state), str(tmp_path / "wan.safetensors"))
    old = os.umask(0o022)
    try:
        convert_checkpoint(tmp_path / "wan.safetensors", tmp_path / "out", head_dim=TINY.head_dim)
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
    assert all(f.stat().st_mode & 0o777 == 0o644 for f in (tmp_path / "out").iterdir())


def _write_sharded(state: dict, folder, shards: int = 3, config: dict | None = None) -> None:
    """An original-layout sharded release folder: ``diffusion_pytorch_model-0000i-of-0000n.safetensors`` + index."""
    import json

    from safetensors.torch import save_file

    folder.mkdir()
    original = diffusers_to_original(state)
    names = sorted(original)
    weight_map = {}
    for i in range(shards):
        shard = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: original[k].contiguous() for k in names[i::shards]}
        save_file(part, str(folder / shard))
        weight_map.update(dict.fromkeys(part, shard))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("arch", ["wan2.1-t2v-14b", "wan2.2-ti2v-5b"])
def test_sharded_original_release_converts_exactly(arch, tmp_path):
    """The 14B / 5B release layout (original names, sharded, index json, original config.json) on the tiny model
    of that architecture: folder or index path both convert to the same weights."""
    cfg = TINY_ARCHITECTURES[arch]
    state = tiny_transformer(seed=3, cfg=cfg).state_dict()
    _write_sharded(state, tmp_path / "release", config={"model_type": arch.split("-")[1], "dim": 48})
    for i, src in enumerate(
        [tmp_path / "release", tmp_path / "release/diffusion_pytorch_model.safetensors.index.json"]
    ):
        out = convert_checkpoint(src, tmp_path / f"out{i}", head_dim=cfg.head_dim)
        reloaded = CausalWanTransformer3DModel.from_pretrained(out)
        assert reloaded.config.in_channels == cfg.latent_channels
        assert all(torch.equal(reloaded.state_dict()[k], state[k]) for k in state)


def test_sharded_release_problems_are_one_line(tmp_path):
    state = tiny_transformer(seed=3, cfg=TINY_ARCHITECTURES["wan2.1-t2v-14b"]).state_dict()
    _write_sharded(state, tmp_path / "gone")
    (tmp_path / "gone" / "diffusion_pytorch_model-00002-of-00003.safetensors").unlink()
    with pytest.raises(ConvertError, match=r"names 3 shards; missing in .*00002-of-00003"):
        load_state_dict(tmp_path / "gone")
    _write_sharded(state, tmp_path / "i2v", config={"model_type": "i2v"})
    with pytest.raises(UnsupportedArchitecture, match="Wan 'i2v' model; .*supported architectures: wan2.1-t2v-1.3b"):
        load_state_dict(tmp_path / "i2v")


def test_arch_check_names_the_first_mismatching_tensor_and_both_shapes():
    five = _meta_state(ARCHITECTURES["wan2.2-ti2v-5b"].transformer)
    check_architecture(five, ARCHITECTURES["wan2.2-ti2v-5b"])
    with pytest.raises(ConvertError) as err:
        check_architecture(five, ARCHITECTURES["wan2.1-t2v-1.3b"])
    assert str(err.value) == (
        "the checkpoint is not wan2.1-t2v-1.3b: tensor scale_shift_table has shape [1, 2, 3072], "
        "wan2.1-t2v-1.3b expects [1, 2, 1536]"
    )  # the first tensor in the model's order (its own parameters, then its modules')
    fourteen = _meta_state(ARCHITECTURES["wan2.1-t2v-14b"].transformer)
    deeper = fourteen | {"blocks.40.ffn.net.2.bias": fourteen["blocks.0.ffn.net.2.bias"]}
    with pytest.raises(ConvertError, match="has 1 tensors wan2.1-t2v-14b lacks, e.g. blocks.40.ffn.net.2.bias"):
        check_architecture(deeper, ARCHITECTURES["wan2.1-t2v-14b"])
    narrow = dict(fourteen)
    narrow["blocks.3.attn2.to_k.weight"] = torch.empty(5120, 4096 // 2, device="meta")
    with pytest.raises(ConvertError, match=r"tensor blocks.3.attn2.to_k.weight has shape \[5120, 2048\], "):
        check_architecture(narrow, ARCHITECTURES["wan2.1-t2v-14b"])


def test_convert_cli_arch_option(state, tmp_path):
    from safetensors.torch import save_file

    save_file(diffusers_to_original(state), str(tmp_path / "wan.safetensors"))
    args = ["full", "convert", "--input", str(tmp_path / "wan.safetensors"), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, [*args, "--arch", "wan2.1-t2v-14b"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "tensor scale_shift_table has shape [1, 2, 32], wan2.1-t2v-14b expects [1, 2, 5120]" in result.output
    result = CliRunner().invoke(main, [*args, "--arch", "wan2.1-i2v-14b"])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "wan2.1-i2v-14b is not supported (image cross-attention" in result.output
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_that_does_not_fit_the_model_folder_names_the_tensor(tmp_path, tiny_components):
    from full.components import _load_checkpoint_into

    other = tiny_transformer(seed=1, cfg=TINY_ARCHITECTURES["wan2.1-t2v-14b"])
    torch.save({"generator": other.state_dict()}, tmp_path / "g.pt")
    with pytest.raises(ValueError, match=r"tensor scale_shift_table has shape \[1, 2, 64\], the model.s \[1, 2, 32\]$"):
        _load_checkpoint_into(tiny_components.transformer, tmp_path / "g.pt", "generator", "tiny")
