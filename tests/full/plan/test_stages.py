"""The plan's prediction of each stage step against a measurement: the same step with real tensors on the CPU,
tracked by PyTorch's MemTracker (peak within 10 %), and its parameter / optimizer bytes against a count."""

from __future__ import annotations

import pytest
import torch

from full.plan.simulate import simulate_family
from full.plan.stages import BUILDERS, STAGE_STEPS


def _param_count(kwargs) -> int:
    from full.model import CausalWanTransformer3DModel

    return sum(p.numel() for p in CausalWanTransformer3DModel(**kwargs).parameters())


@pytest.mark.parametrize("family", list(BUILDERS))
def test_predicted_peak_within_10_percent_of_measured(family, small_config, small_arch):
    torch.manual_seed(0)
    predicted = simulate_family(small_config, family, 1, small_arch, count=False)
    measured = simulate_family(small_config, family, 1, small_arch, count=False, fake=False)
    assert [p.step for p in predicted] == [m.step for m in measured]
    for p, m in zip(predicted, measured, strict=True):
        assert m.memory.total > 0
        assert abs(p.memory.total - m.memory.total) <= 0.10 * m.memory.total, (p.step, p.memory, m.memory)


def test_trained_weights_gradients_and_adamw_state_counted(small_config, small_arch):
    """ar-diffusion on one rank: fp32 weights, fp32 AdamW moments (2 per parameter), gradients ≤ weights."""
    (step,) = simulate_family(small_config, "ar-diffusion", 1, small_arch, count=False)
    n = _param_count(small_arch.base)
    m = step.memory
    assert m.parameters >= 4 * n  # weights (fp32) + buffers (RoPE tables)
    # exp_avg + exp_avg_sq; the peak falls inside AdamW's step, with its temporaries counted as optimizer state
    assert 2 * 4 * n <= m.optimizer < 3 * 4 * n
    assert 0 < m.gradients <= 4 * n
    assert m.ema == m.frozen == 0


def test_dmd_frozen_real_score_in_bf16_and_fp32_ema(small_config, small_arch):
    gen, critic = simulate_family(small_config, "dmd", 1, small_arch, count=False)
    assert (gen.step, critic.step) == ("dmd-generator", "dmd-critic")
    real_params = _param_count(small_arch.real_score)
    assert 2 * real_params <= gen.memory.frozen < 4 * real_params  # bf16 except Wan's fp32 modules (+ buffers)
    assert gen.memory.ema >= 4 * _param_count(small_arch.base)


def test_every_step_named():
    assert set(STAGE_STEPS) >= {"ar-diffusion", "ode-pairs", "ode", "cd", "dmd-generator", "dmd-critic", "sampling"}
