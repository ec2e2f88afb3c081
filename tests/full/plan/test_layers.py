"""Linear extrapolation in the block count against full simulations at small sizes (within 1 %)."""

from __future__ import annotations

import pytest

import full.plan.simulate as simulate_module
from full.config import build_config
from full.plan.layers import LayerPlan, layer_plan, with_blocks
from full.plan.simulate import simulate_depths, simulate_family
from full.plan.stages import Architectures
from tests.full.plan.conftest import SMALL, SMALL_VIDEO


def _arch(base: int, real: int) -> Architectures:
    return Architectures(dict(SMALL, num_layers=base), dict(SMALL, num_layers=real), text_tokens=16)


@pytest.mark.parametrize(
    "depths,simulated",
    [
        ((30, 40), ((3, 4), (6, 8), (9, 12))),  # Wan-1.3B generator beside the 14B real score
        ((30, 30), ((2, 2), (4, 4), (6, 6))),  # at least 2 blocks per model
        ((8, 12), ((2, 3), (4, 6), (6, 9))),
        ((9, 12), ((9, 12),)),  # three shallow runs would not be shallower: full depth
        ((6, 6), ((6, 6),)),
        ((30, 31), ((30, 31),)),
    ],
)
def test_layer_plan(depths, simulated):
    plan = layer_plan(_arch(*depths))
    assert plan.simulated == simulated and plan.target == depths
    assert plan.extrapolated == (simulated != (depths,))
    assert layer_plan(_arch(*depths), extrapolate=False) == LayerPlan((depths,), depths)
    assert layer_plan(_arch(*depths), depths=2).simulated == (simulated[:2] if len(simulated) == 3 else simulated)


def test_layer_plan_refuses_other_depth_counts():
    with pytest.raises(ValueError, match="2 or 3"):
        layer_plan(_arch(30, 40), depths=4)


@pytest.mark.parametrize(
    "family,depths,count",
    [("ar-diffusion", (8, 8), True), ("sampling", (8, 8), False), ("dmd", (8, 12), False)],
)
def test_extrapolation_equals_full_simulation_within_1_percent(family, depths, count, monkeypatch):
    """Memory (every part of the split) and FLOPs from three (and from two) shallow simulations against the
    full-depth one (one block of 3 latent frames; FLOPs counted for one family: they are affine in the depth by
    construction). The two-depth plan simulates the three-depth plan's two shallowest depths: each simulation is
    run once and its (deterministic) result reused, so the test pays for each depth once."""
    config = build_config("configs/full/causal_forcing_chunkwise.yaml", [*SMALL_VIDEO, "video.latent_frames=3"])
    arch = _arch(*depths)
    plan = layer_plan(arch)
    assert plan.extrapolated
    runs: dict[tuple, list] = {}

    def simulate_once(config, family, ranks, arch, count=True):
        key = (family, ranks, arch.base["num_layers"], arch.real_score["num_layers"], count)
        if key not in runs:
            runs[key] = simulate_family(config, family, ranks, arch, count)
        return runs[key]

    monkeypatch.setattr(simulate_module, "simulate_family", simulate_once)
    extrapolated = simulate_depths(config, family, 1, arch, plan, count)
    full = simulate_family(config, family, 1, arch, count)
    simulated = len(runs)
    from_two = simulate_depths(config, family, 1, arch, layer_plan(arch, depths=2), count)
    assert len(runs) == simulated == 3  # the two-depth plan's depths are among the three simulated
    for e, f in zip(from_two, full, strict=True):
        assert e.spread is None
        assert e.memory.total == pytest.approx(f.memory.total, rel=0.01), e.step
    for e, f in zip(extrapolated, full, strict=True):
        assert e.step == f.step and e.layers == plan
        for name, value in f.memory.__dict__.items():
            assert getattr(e.memory, name) == pytest.approx(value, rel=0.01, abs=0.01 * f.memory.total), (e.step, name)
        assert e.spread <= 0.01 * f.memory.total
        if count:
            assert e.ops.flops == pytest.approx(f.ops.flops, rel=0.01)
            assert e.ops.bytes == pytest.approx(f.ops.bytes, rel=0.01)


def test_with_blocks_changes_only_the_depths():
    arch = with_blocks(_arch(30, 40), (3, 4))
    assert arch.base == dict(SMALL, num_layers=3) and arch.real_score == dict(SMALL, num_layers=4)
    assert arch.text_tokens == 16
