"""2-process torchrun (gloo, CPU) runs of the tiny preset: DDP replicas stay identical, FSDP2 matches DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cf_ref.io import load_tensors

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "logging.progress=false",
    "logging.sample_count=0",
    "model.tiny_base.steps=0",
    "model.tiny_base.videos=8",
    "ar_diffusion.loop.steps=3",
    "ar_diffusion.loop.batch_size=2",
    "ode_pairs.max_pairs=4",
    "schedule.ode_steps=4",
    "ode.loop.steps=3",
    "ode.loop.batch_size=2",
    "cd.loop.steps=3",
    "cd.loop.batch_size=2",
    "dmd.loop.steps=6",
    "dmd.loop.batch_size=1",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``cf-ref full train --preset tiny`` on 2 processes with DDP, then ``--recipe causal-forcing-pp`` with FSDP2."""
    ddp, fsdp = tmp_path_factory.mktemp("ddp"), tmp_path_factory.mktemp("fsdp")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(Path(__file__).with_name("distributed_worker.py")), str(ddp), str(fsdp), *SMALL]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return ddp, fsdp


def test_ddp_tiny_preset_keeps_identical_replicas(runs):
    ddp, _ = runs
    for stage, trainees in [("ar-diffusion", ["teacher"]), ("ode", ["student"]), ("dmd", ["generator", "critic"])]:
        report = json.loads((ddp / stage / "final" / "replicas.json").read_text())
        for name in trainees:
            assert report[name] == {"processes": 2, "sharded": False, "identical": True}, (stage, report)
    assert (ddp / "ode-pairs" / "index.json").is_file()
    assert (ddp / "dmd" / "final" / "model.safetensors").is_file()


def test_fsdp2_matches_ddp(runs):
    """With FSDP2 sharding the AR teacher equals the DDP one to float tolerance, and the Causal Forcing++ chain
    (CD with a sharded EMA target, DMD with the KV-cache rollout) completes."""
    ddp, fsdp = runs
    a = load_tensors(ddp / "ar-diffusion" / "final" / "model.safetensors")
    b = load_tensors(fsdp / "ar-diffusion" / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    for stage in ("cd", "dmd"):
        assert (fsdp / stage / "final" / "model.safetensors").is_file()
    assert json.loads((fsdp / "cd" / "final" / "replicas.json").read_text())["student"]["sharded"] is True
