import json

import pytest
import torch

from cf_ref.io import atomic_path, load_tensors, save_tensors, write_json


def test_atomic_write_replaces_or_keeps_old(tmp_path):
    p = tmp_path / "sub" / "m.json"
    write_json(p, {"a": 1})
    assert json.loads(p.read_text()) == {"a": 1}
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("torn")
            raise RuntimeError("crash")
    assert json.loads(p.read_text()) == {"a": 1}
    assert [q.name for q in p.parent.iterdir()] == ["m.json"]  # no temp files left behind


def test_tensors_round_trip_and_errors(tmp_path):
    t = {"w": torch.randn(3, 4), "b": torch.arange(5)}
    save_tensors(tmp_path / "w.safetensors", t, metadata={"step": "3"})
    back = load_tensors(tmp_path / "w.safetensors")
    for k in t:
        torch.testing.assert_close(back[k], t[k])
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_tensors(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="cannot read"):
        load_tensors(tmp_path / "bad.safetensors")


def test_atomic_file_keeps_extension_while_writing_and_gets_umask_permissions(tmp_path):
    import os

    seen = {}
    with atomic_path(tmp_path / "clip.mp4") as tmp:
        seen["suffix"] = tmp.suffix
        tmp.write_bytes(b"x")
    assert seen["suffix"] == ".mp4"
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "clip.mp4").stat().st_mode & 0o777 == 0o666 & ~mask


def test_to_plain_turns_configs_and_records_into_json_ready_data():
    import dataclasses
    import enum
    import json

    from cf_ref.io import to_plain

    class Colour(enum.Enum):
        RED = "red"

    @dataclasses.dataclass
    class Inner:
        pair: tuple[int, int] = (1, 2)
        colour: Colour = Colour.RED

    @dataclasses.dataclass
    class Outer:
        inner: Inner = dataclasses.field(default_factory=Inner)
        table: dict = dataclasses.field(default_factory=lambda: {Colour.RED: torch.tensor([[1.5, 2.0]])})

    plain = to_plain(Outer())
    assert plain == {"inner": {"pair": [1, 2], "colour": "red"}, "table": {"red": [[1.5, 2.0]]}}
    assert json.loads(json.dumps(plain)) == plain
    assert to_plain(Outer) is Outer  # a class is not an instance: left alone
