"""Reading checkpoint files: safetensors files and folders, torch.save dicts and training checkpoints, sharded
releases; every unreadable or incomplete input is a one-line error."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from full.checkpoint_files import ConvertError, load_state_dict

STATE = {"a.weight": torch.arange(6.0).reshape(2, 3), "b.bias": torch.ones(3)}


def _same(got: dict, want: dict) -> bool:
    return set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_every_single_file_form_reads_back_the_tensors(tmp_path):
    save_file(STATE, str(tmp_path / "w.safetensors"))
    torch.save(STATE, tmp_path / "plain.pt")
    torch.save(
        {"generator": STATE, "generator_ema": {k: 2 * v for k, v in STATE.items()}, "step": 3}, tmp_path / "t.pt"
    )
    assert _same(load_state_dict(tmp_path / "w.safetensors"), STATE)
    assert _same(load_state_dict(tmp_path / "plain.pt"), STATE)
    assert _same(load_state_dict(tmp_path / "t.pt"), STATE)  # the default key: generator
    assert _same(load_state_dict(tmp_path / "t.pt", key="generator_ema"), {k: 2 * v for k, v in STATE.items()})
    folder = tmp_path / "folder"
    folder.mkdir()
    save_file({"a.weight": STATE["a.weight"]}, str(folder / "one.safetensors"))
    save_file({"b.bias": STATE["b.bias"]}, str(folder / "two.safetensors"))
    assert _same(load_state_dict(folder), STATE)


def test_unreadable_inputs_are_one_line_errors(tmp_path):
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ConvertError, match="holds a list, expected a state dict"):
        load_state_dict(tmp_path / "list.pt")
    torch.save({"generator": STATE, "critic": STATE, "step": 1}, tmp_path / "t.pt")
    with pytest.raises(ConvertError, match=r"entries \['generator', 'critic'\]; choose one"):
        load_state_dict(tmp_path / "t.pt", key="ema")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors weights"):
        load_state_dict(tmp_path / "empty")


def test_a_sharded_release_must_hold_what_its_index_lists(tmp_path):
    folder = tmp_path / "release"
    folder.mkdir()
    save_file({"a.weight": STATE["a.weight"]}, str(folder / "m-00001-of-00002.safetensors"))
    save_file({"b.bias": STATE["b.bias"]}, str(folder / "m-00002-of-00002.safetensors"))
    index = folder / "m.safetensors.index.json"
    weight_map = {"a.weight": "m-00001-of-00002.safetensors", "b.bias": "m-00002-of-00002.safetensors"}
    index.write_text(json.dumps({"weight_map": weight_map}))
    assert _same(load_state_dict(folder), STATE) and _same(load_state_dict(index), STATE)
    index.write_text(json.dumps({"weight_map": weight_map | {"c.weight": "m-00001-of-00002.safetensors"}}))
    with pytest.raises(ConvertError, match=r"the shards lack 1 tensors the index lists, e.g. \['c.weight'\]"):
        load_state_dict(folder)
    index.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ConvertError, match="is not a safetensors index"):
        load_state_dict(index)
