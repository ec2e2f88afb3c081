"""The architecture registry: sizes against a hand count, recognition of configs, one-line refusals."""

from __future__ import annotations

import pytest

from full.architectures import (
    ARCHITECTURES,
    UNSUPPORTED,
    ImageConditioning,
    TimestepInput,
    UnsupportedArchitecture,
    check_supported,
    get_architecture,
    identify,
)
from full.tiny import TINY_ARCHITECTURES, transformer_kwargs


def hand_count(cfg: dict) -> int:
    """Parameters of a Wan T2V DiT counted from its layers (weights + biases), independently of diffusers."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    c_in, c_out, f = cfg["in_channels"], cfg["out_channels"], cfg["ffn_dim"]
    patch = 1
    for p in cfg["patch_size"]:
        patch *= p
    attention = 4 * (d * d + d) + 2 * d  # q, k, v, out + RMS-norm weights of q and k
    block = 2 * attention + 2 * d + (d * f + f + f * d + d) + 6 * d  # self, cross, affine norm2, FFN, modulation
    top = (c_in * patch * d + d) + (cfg["text_dim"] * d + d + d * d + d) + (cfg["freq_dim"] * d + d + d * d + d)
    top += d * 6 * d + 6 * d + (d * c_out * patch + c_out * patch) + 2 * d  # time_proj, proj_out, head modulation
    return top + cfg["num_layers"] * block


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_parameter_counts_equal_a_hand_count(name):
    arch = ARCHITECTURES[name]
    assert arch.parameter_count() == hand_count(dict(arch.transformer))


def test_published_sizes():
    billions = {name: round(a.parameter_count() / 1e9, 2) for name, a in ARCHITECTURES.items()}
    assert billions == {"wan2.1-t2v-1.3b": 1.42, "wan2.1-t2v-14b": 14.29, "wan2.2-ti2v-5b": 5.0}
    five = ARCHITECTURES["wan2.2-ti2v-5b"]
    assert (five.latent_channels, five.spatial_compression, five.temporal_compression) == (48, 16, 4)
    assert five.transformer["num_attention_heads"] * five.transformer["attention_head_dim"] == 3072
    assert five.timesteps is TimestepInput.PER_TOKEN and five.image is ImageConditioning.FIRST_FRAME
    assert five.tokens_per_frame(704, 1280) == 44 * 80 // 4
    assert ARCHITECTURES["wan2.1-t2v-14b"].tokens_per_frame(480, 832) == 60 * 104 // 4


def test_identify_recognises_the_released_configs_and_not_other_sizes():
    for arch in ARCHITECTURES.values():
        assert identify(dict(arch.transformer)) is arch
    for cfg in TINY_ARCHITECTURES.values():
        assert identify(transformer_kwargs(cfg)) is None


def test_unsupported_models_are_one_line_naming_the_supported():
    for name in UNSUPPORTED:
        with pytest.raises(UnsupportedArchitecture) as err:
            get_architecture(name)
        message = str(err.value)
        assert "\n" not in message and "wan2.2-ti2v-5b" in message and name in message
    with pytest.raises(UnsupportedArchitecture, match="unknown architecture 'wan3'; supported architectures: wan2.1"):
        get_architecture("wan3")
    assert get_architecture(" Wan2.2-TI2V-5B ") is ARCHITECTURES["wan2.2-ti2v-5b"]
    i2v = {**ARCHITECTURES["wan2.1-t2v-14b"].transformer, "image_dim": 1280, "added_kv_proj_dim": 5120}
    with pytest.raises(UnsupportedArchitecture, match="image cross-attention .* supported architectures: "):
        check_supported(i2v)
    with pytest.raises(UnsupportedArchitecture, match="temporal patch size of 1"):
        check_supported({"patch_size": (2, 2, 2)})


def test_the_model_refuses_an_i2v_config_in_one_line():
    from full.model import CausalWanTransformer3DModel

    kwargs = dict(transformer_kwargs(), image_dim=8, added_kv_proj_dim=32)
    with pytest.raises(UnsupportedArchitecture, match="image cross-attention"):
        CausalWanTransformer3DModel(**kwargs)
