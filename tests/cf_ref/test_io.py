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


# ------------------------------------------------------------------------------------------------ folders


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_folders_and_weights_follow_the_umask(tmp_path, mask):
    """safetensors writes 0600 and mkdtemp 0700; what cf_ref writes follows the umask instead."""
    import os

    from safetensors.torch import save_file

    from cf_ref.io import follow_umask, make_temp_dir

    old = os.umask(mask)
    try:
        folder = make_temp_dir(tmp_path, "step-1")
        save_tensors(folder / "a.safetensors", {"x": torch.zeros(2)})
        save_file({"x": torch.zeros(2)}, str(folder / "b.safetensors"))
        assert (folder / "b.safetensors").stat().st_mode & 0o777 == 0o600  # what the library does alone
        follow_umask(folder)
    finally:
        os.umask(old)
    assert folder.name.startswith(".step-1.") and folder.stat().st_mode & 0o777 == 0o777 & ~mask
    for f in ("a.safetensors", "b.safetensors"):
        assert (folder / f).stat().st_mode & 0o777 == 0o666 & ~mask


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    from cf_ref.io import make_temp_dir, remove_stale_temporaries

    ckpt = tmp_path / "stage" / "checkpoints"
    stale_dir = make_temp_dir(ckpt, "step-00000100")
    (stale_dir / "model.safetensors").write_bytes(b"x" * 100)
    (ckpt / ".step-00000050.k2j_3h4g").mkdir()  # the name mkdtemp gave before
    (tmp_path / "stage" / ".model.ab12cd34.tmp.safetensors").write_bytes(b"x")
    keep = [ckpt / "step-00000050", tmp_path / ".cache", tmp_path / "stage" / "final.safetensors", tmp_path / ".git"]
    for k in keep:
        k.parent.mkdir(parents=True, exist_ok=True)
        k.mkdir() if "." not in k.name[1:] else k.write_bytes(b"keep")
    removed = remove_stale_temporaries(tmp_path)
    assert len(removed) == 3 and all(not p.exists() for p in removed)
    assert all(k.exists() for k in keep)


def test_writable_folder_is_checked_without_creating_it(tmp_path, read_only_dir):
    from cf_ref.errors import UserError
    from cf_ref.io import check_writable_dir

    assert check_writable_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # nothing created
    with pytest.raises(UserError, match="cannot write in output folder"):
        check_writable_dir(read_only_dir / "out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is not a folder"):
        check_writable_dir(tmp_path / "file" / "out")
    with pytest.raises(UserError, match="empty"):
        check_writable_dir("")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"caf\xe9\n", r"not UTF-8 text \(byte 3"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8|binary"),
        (b"a\x00b", "binary"),
    ],
)
def test_text_files_must_be_utf8(tmp_path, content, message):
    from cf_ref.errors import UserError
    from cf_ref.io import read_text

    (tmp_path / "f.txt").write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_text(tmp_path / "f.txt", "prompt file")
    (tmp_path / "g.txt").write_text("ünïcode ✓\n", encoding="utf-8")
    assert read_text(tmp_path / "g.txt") == "ünïcode ✓\n"
