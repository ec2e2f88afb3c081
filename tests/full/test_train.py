"""full.train: the shared loop — NaN stop keeps the last good checkpoint, no silent overwrite, gradient
accumulation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cf_ref.ema import EmaFirstUpdate, ema_copy
from cf_ref.io import load_tensors
from full.config import LoggingConfig, LoopConfig, Precision
from full.distributed import DistContext, Runner
from full.logs import read_metrics
from full.train import StagePlan, StageStateError, Trainee, TrainingDiverged, Update, run_stage

CTX = DistContext()
COPY = EmaFirstUpdate.COPY
QUIET = LoggingConfig(progress=False)


X = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
Y = torch.tensor([[1.0], [2.0]])


def toy_plan(
    nan_from: int | None = None, per_micro_batch: bool = False, ema_first: EmaFirstUpdate | None = None
) -> StagePlan:
    """Least squares on two samples; micro-batch m sees sample m only when ``per_micro_batch``; an EMA copy
    (decay 0.9, exported as ``ema``) when ``ema_first`` is given."""
    torch.manual_seed(0)
    runner = Runner(nn.Linear(3, 1))
    ema = None if ema_first is None else ema_copy(runner)
    trainee = Trainee(
        "net", runner, torch.optim.SGD(runner.parameters(), lr=0.1), 100.0, ema, 0.9, ema_first=ema_first or COPY
    )

    def updates(step: int):
        def loss(micro: int):
            rows = slice(micro, micro + 1) if per_micro_batch else slice(None)
            value = (runner(lambda m: m(X[rows])) - Y[rows]).pow(2).mean()
            return (value * float("nan") if nan_from is not None and step >= nan_from else value), {}

        return [Update("net", loss)]

    exports = {"model": runner} if ema is None else {"model": runner, "ema": ema}
    return StagePlan("toy", {"net": trainee}, updates, exports=exports)


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


@pytest.mark.parametrize("first", list(EmaFirstUpdate))
def test_ema_first_update_copies_or_blends_from_the_start(tmp_path, first):
    """After two steps from θ_0: COPY gives 0.9 θ_1 + 0.1 θ_2; BLEND (the authors' EMA_FSDP) 0.81 θ_0 + 0.09 θ_1
    + 0.1 θ_2 — θ_1 from a one-step run, θ_0 the initial weights."""
    weights = []
    for steps in (1, 2):
        run_stage(toy_plan(ema_first=first), LoopConfig(steps=steps), QUIET, Precision.FP32, CTX, tmp_path / f"{steps}")
        weights.append(load_tensors(tmp_path / f"{steps}" / "final" / "model.safetensors"))
    ema = load_tensors(tmp_path / "2" / "final" / "ema.safetensors")
    theta0 = toy_plan().trainees["net"].module.model.state_dict()
    for k, v in ema.items():
        if first is EmaFirstUpdate.COPY:
            expected = 0.9 * weights[0][k] + 0.1 * weights[1][k]
        else:
            expected = 0.81 * theta0[k] + 0.09 * weights[0][k] + 0.1 * weights[1][k]
        torch.testing.assert_close(v, expected)
