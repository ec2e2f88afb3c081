"""full.train: the shared loop — NaN stop keeps the last good checkpoint, no silent overwrite, gradient
accumulation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cf_ref.io import load_tensors
from full.config import LoggingConfig, LoopConfig, Precision
from full.distributed import DistContext, Runner
from full.logs import read_metrics
from full.train import StagePlan, StageStateError, Trainee, TrainingDiverged, Update, run_stage

CTX = DistContext()
QUIET = LoggingConfig(progress=False)


X = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
Y = torch.tensor([[1.0], [2.0]])


def toy_plan(nan_from: int | None = None, per_micro_batch: bool = False) -> StagePlan:
    """Least squares on two samples; micro-batch m sees sample m only when ``per_micro_batch``."""
    torch.manual_seed(0)
    runner = Runner(nn.Linear(3, 1))
    trainee = Trainee("net", runner, torch.optim.SGD(runner.parameters(), lr=0.1), max_grad_norm=100.0)

    def updates(step: int):
        def loss(micro: int):
            rows = slice(micro, micro + 1) if per_micro_batch else slice(None)
            value = (runner(lambda m: m(X[rows])) - Y[rows]).pow(2).mean()
            return (value * float("nan") if nan_from is not None and step >= nan_from else value), {}

        return [Update("net", loss)]

    return StagePlan("toy", {"net": trainee}, updates, exports={"model": runner})


def test_nan_stops_with_the_last_good_checkpoint_kept(tmp_path):
    loop = LoopConfig(steps=10, checkpoint_every=2, keep_checkpoints=1)
    with pytest.raises(TrainingDiverged) as info:
        run_stage(toy_plan(nan_from=5), loop, QUIET, Precision.FP32, CTX, tmp_path)
    assert "net loss is not finite at step 6" in str(info.value) and "step-00000004" in str(info.value)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert kept == ["step-00000004"] and not (tmp_path / "final").exists()
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4, 5]  # never the NaN step
    # the kept checkpoint is the state after 4 clean steps
    clean = tmp_path / "clean"
    run_stage(toy_plan(), LoopConfig(steps=4, checkpoint_every=2), QUIET, Precision.FP32, CTX, clean)
    kept_w = load_tensors(tmp_path / "checkpoints" / "step-00000004" / "net.safetensors")
    clean_w = load_tensors(clean / "final" / "model.safetensors")
    assert all(torch.equal(kept_w[k], clean_w[k]) for k in clean_w)


def test_existing_work_is_never_overwritten(tmp_path):
    loop = LoopConfig(steps=2, checkpoint_every=1)
    run_stage(toy_plan(), loop, QUIET, Precision.FP32, CTX, tmp_path)
    with pytest.raises(StageStateError, match="pass --resume"):
        run_stage(toy_plan(), loop, QUIET, Precision.FP32, CTX, tmp_path)


def test_gradient_accumulation_equals_the_full_batch(tmp_path):
    """Two micro-batches of one sample each give the update of one batch of both samples."""
    run_stage(toy_plan(), LoopConfig(steps=3, checkpoint_every=3), QUIET, Precision.FP32, CTX, tmp_path / "a")
    loop = LoopConfig(steps=3, grad_accum=2, checkpoint_every=3)
    run_stage(toy_plan(per_micro_batch=True), loop, QUIET, Precision.FP32, CTX, tmp_path / "b")
    a = load_tensors(tmp_path / "a" / "final" / "model.safetensors")
    b = load_tensors(tmp_path / "b" / "final" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)
