"""full.checkpoint: atomic complete checkpoints, exact state round trip, keep-last-good, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cf_ref.io import save_tensors
from full.checkpoint import (
    CheckpointError,
    export_weights,
    gather_weights,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from full.distributed import DistContext, Runner

CTX = DistContext()


def net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return Runner(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)))


def trained(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    module = net(seed)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-2)
    for _ in range(3):
        module(lambda m: m(torch.randn(5, 4))).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    return module, opt


def test_round_trip_restores_weights_optimizer_and_rng(tmp_path):
    module, opt = trained()
    torch.manual_seed(123)
    folder = save_checkpoint(
        tmp_path, 3, {"gen": module}, {"gen": (module, opt)}, CTX, extra={"ema_updates": {"gen": 2}}
    )
    expected_draw = torch.rand(3)
    assert folder.name == "step-00000003" and latest_checkpoint(tmp_path) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["gen.safetensors", "optimizers.pt", "rng.pt", "state.json"]
    assert list(gather_weights(module, CTX)) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # the model's own names

    other = net(1)
    other_opt = torch.optim.AdamW(other.parameters(), lr=1e-2)
    resumed = load_checkpoint(folder, {"gen": other}, {"gen": (other, other_opt)}, CTX)
    assert resumed.step == 3 and resumed.extra == {"ema_updates": {"gen": 2}}
    for a, b in zip(module.parameters(), other.parameters()):
        assert torch.equal(a, b)
    sa, sb = opt.state_dict()["state"], other_opt.state_dict()["state"]
    for k in sa:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa[k][name], sb[k][name])
    assert torch.equal(torch.rand(3), expected_draw)  # the RNG continues where the checkpoint was taken


def test_interrupted_write_is_ignored_and_old_ones_pruned(tmp_path):
    module, opt = trained()
    for step in (2, 4, 6):
        save_checkpoint(tmp_path, step, {"gen": module}, {"gen": (module, opt)}, CTX, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert names == ["step-00000004", "step-00000006"]
    # a crash while writing leaves a temporary folder and no state.json: it is never picked up
    torn = tmp_path / "checkpoints" / "step-00000008"
    torn.mkdir()
    save_tensors(torn / "gen.safetensors", gather_weights(module, CTX))
    (tmp_path / "checkpoints" / "latest").write_text("step-00000008\n")
    assert latest_checkpoint(tmp_path).name == "step-00000006"
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        load_checkpoint(torn, {"gen": module}, {}, CTX)


def test_weights_mismatch_and_corruption_are_clear(tmp_path):
    module = net(0)
    export_weights(tmp_path / "w.safetensors", module, CTX)
    load_weights(net(1), tmp_path / "w.safetensors")
    wider = Runner(nn.Sequential(nn.Linear(4, 9), nn.Tanh(), nn.Linear(9, 2)))
    with pytest.raises(CheckpointError, match="another shape"):
        load_weights(wider, tmp_path / "w.safetensors")
    deeper = Runner(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2), nn.Linear(2, 2)))
    with pytest.raises(CheckpointError, match=r"2 missing \(e.g. \[.3.bias., .3.weight.\]\)"):
        load_weights(deeper, tmp_path / "w.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_weights(module, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="no file at"):
        load_weights(module, tmp_path / "none.safetensors")


def _flip(path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x10  # inside the last tensor's data: the header stays valid
    path.write_bytes(bytes(raw))


def test_every_file_is_checksummed_and_a_flipped_byte_is_found(tmp_path):
    import hashlib
    import json

    from full.checkpoint import verify_checkpoint

    module, opt = trained()
    folder = save_checkpoint(tmp_path, 3, {"gen": module}, {"gen": (module, opt)}, CTX)
    files = json.loads((folder / "state.json").read_text())["files"]
    assert sorted(files) == ["gen.safetensors", "optimizers.pt", "rng.pt"]
    assert files["rng.pt"] == hashlib.sha256((folder / "rng.pt").read_bytes()).hexdigest()
    verify_checkpoint(folder)
    for name in ("gen.safetensors", "optimizers.pt"):
        original = (folder / name).read_bytes()
        _flip(folder / name)
        with pytest.raises(CheckpointError, match="is corrupt"):
            verify_checkpoint(folder)
        with pytest.raises(CheckpointError, match="is corrupt"):
            load_checkpoint(folder, {"gen": net(1)}, {"gen": (module, opt)}, CTX)
        (folder / name).write_bytes(original)
    verify_checkpoint(folder)


def test_a_corrupt_latest_checkpoint_is_moved_aside_for_the_previous_good_one(tmp_path):
    from full.checkpoint import resumable_checkpoint

    module, opt = trained()
    for step in (1, 2):
        save_checkpoint(tmp_path, step, {"gen": module}, {"gen": (module, opt)}, CTX, keep=2)
    _flip(tmp_path / "checkpoints" / "step-00000002" / "gen.safetensors")
    said = []
    assert resumable_checkpoint(tmp_path, say=said.append) == tmp_path / "checkpoints" / "step-00000001"
    assert len(said) == 1 and "step-00000002 is corrupt" in said[0] and "corrupt-step-00000002" in said[0]
    assert (tmp_path / "checkpoints" / "corrupt-step-00000002").is_dir()
    _flip(tmp_path / "checkpoints" / "step-00000001" / "gen.safetensors")
    with pytest.raises(CheckpointError, match="no intact checkpoint left"):
        resumable_checkpoint(tmp_path, say=said.append)


def test_weights_that_record_a_checksum_are_verified_when_loaded(tmp_path):
    module, _ = trained()
    export_weights(tmp_path / "model.safetensors", module, CTX)
    load_weights(net(1), tmp_path / "model.safetensors")
    _flip(tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="student weights: .*model.safetensors is corrupt"):
        load_weights(net(1), tmp_path / "model.safetensors", what="student weights")


def test_checkpoints_follow_the_umask(tmp_path):
    import os

    module, opt = trained()
    old = os.umask(0o027)
    try:
        folder = save_checkpoint(tmp_path, 1, {"gen": module}, {"gen": (module, opt)}, CTX)
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == 0o750
    assert all(f.stat().st_mode & 0o777 == 0o640 for f in folder.iterdir())


def test_a_failed_checkpoint_write_names_the_checkpoint_that_survives(tmp_path):
    """A write that fails half-way (here: the process may not write files over 20 kB, as on a full disk) leaves the
    previous checkpoint intact and says so; no temporary folder is left."""
    import subprocess
    import sys
    from pathlib import Path

    module, opt = trained()
    save_checkpoint(tmp_path, 1, {"gen": module}, {"gen": (module, opt)}, CTX)
    code = f"""
import resource, sys, torch
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from torch import nn
from full.checkpoint import CheckpointError, save_checkpoint
from full.distributed import DistContext, Runner
m = Runner(nn.Sequential(nn.Linear(4, 2000)))
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
try:
    save_checkpoint({str(tmp_path)!r}, 2, {{"gen": m}}, {{}}, DistContext())
except CheckpointError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "cannot write checkpoint step-00000002" in out.stdout, out.stdout + out.stderr[-2000:]
    assert f"the previous checkpoint {tmp_path / 'checkpoints' / 'step-00000001'} is intact" in out.stdout
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-00000001"]
    assert latest_checkpoint(tmp_path).name == "step-00000001"
