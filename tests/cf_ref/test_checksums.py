"""cf_ref.checksums: weights carry the SHA-256 of their content; a flipped bit or a truncation is found."""

import pytest
import torch

from cf_ref.io import load_tensors, save_tensors


def _flip_byte_in_data(path, offset_from_end: int = 7) -> None:
    """Flip one bit of a byte inside the tensor data (the header stays valid)."""
    raw = bytearray(path.read_bytes())
    raw[-offset_from_end] ^= 0x01
    path.write_bytes(bytes(raw))


def test_weights_carry_a_checksum_that_finds_a_flipped_byte(tmp_path):
    """The digest is SHA-256 over (name, shape, bytes) in name order — recomputed here independently with hashlib —
    stored in the file's metadata; verification streams the file and finds a single flipped bit."""
    import hashlib
    import json as js

    from safetensors import safe_open

    from cf_ref.checksums import DIGEST_KEY, IntegrityError, verify_tensors

    t = {"w": torch.randn(3, 4), "a": torch.arange(5, dtype=torch.int64), "h": torch.ones(2, dtype=torch.bfloat16)}
    digest = save_tensors(tmp_path / "w.safetensors", t, metadata={"step": "3"})
    h = hashlib.sha256()
    for name in sorted(t):
        h.update(js.dumps([name, list(t[name].shape)]).encode())
        h.update(t[name].contiguous().view(torch.uint8).numpy().tobytes())
    assert digest == h.hexdigest()
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as fh:
        assert fh.metadata() == {"step": "3", DIGEST_KEY: digest}
    assert verify_tensors(tmp_path / "w.safetensors") is True
    _flip_byte_in_data(tmp_path / "w.safetensors")
    assert load_tensors(tmp_path / "w.safetensors").keys() == t.keys()  # still loads: only the checksum sees it
    with pytest.raises(IntegrityError, match="is corrupt"):
        verify_tensors(tmp_path / "w.safetensors")
    (tmp_path / "w.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes()[:-20])
    with pytest.raises(IntegrityError, match="truncated"):
        verify_tensors(tmp_path / "w.safetensors")
    from safetensors.torch import save_file

    save_file(t, str(tmp_path / "foreign.safetensors"))  # written elsewhere: no checksum
    assert verify_tensors(tmp_path / "foreign.safetensors") is False
    with pytest.raises(IntegrityError, match="records no checksum"):
        verify_tensors(tmp_path / "foreign.safetensors", require=True)


def test_torch_files_are_hashed_while_written(tmp_path):
    import hashlib

    from cf_ref.checksums import file_digest, save_torch

    digest = save_torch({"state": torch.randn(100), "step": 3}, tmp_path / "o.pt")
    assert digest == hashlib.sha256((tmp_path / "o.pt").read_bytes()).hexdigest() == file_digest(tmp_path / "o.pt")
    assert torch.load(tmp_path / "o.pt", weights_only=True)["step"] == 3
