from __future__ import annotations

import json

import pytest

from cf_ref.errors import UserError
from full.architectures import ARCHITECTURES as REGISTRY
from full.model import WAN21_T2V_1_3B, WAN21_T2V_14B, WAN22_TI2V_5B
from full.plan.architectures import architecture


def test_release_names_without_a_folder():
    assert architecture("Wan2.1-T2V-1.3B-Diffusers")[1] == WAN21_T2V_1_3B
    assert architecture("/models/Wan2.1-T2V-14B-Diffusers/transformer".rsplit("/", 1)[0])[1] == WAN21_T2V_14B
    assert architecture("wan2.1-t2v-14b") == ("wan2.1-t2v-14b", WAN21_T2V_14B)
    assert architecture("/models/Wan2.2-TI2V-5B-Diffusers") == ("wan2.2-ti2v-5b", WAN22_TI2V_5B)


def test_every_registered_architecture_is_plannable_by_name():
    for name, arch in REGISTRY.items():
        assert architecture(name) == (name, dict(arch.transformer))


def test_config_json_wins_over_the_name(tmp_path):
    folder = tmp_path / "Wan2.1-T2V-14B" / "transformer"
    folder.mkdir(parents=True)
    folder.joinpath("config.json").write_text(json.dumps({"_class_name": "X", **WAN21_T2V_1_3B, "num_layers": 3}))
    name, kwargs = architecture(folder.parent)
    assert kwargs["num_layers"] == 3 and "_class_name" not in kwargs


def test_unknown_folder_names_the_known_architectures(tmp_path):
    with pytest.raises(UserError, match="wan2.1-t2v-1.3b"):
        architecture(tmp_path / "my-model")
