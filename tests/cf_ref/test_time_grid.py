import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cf_ref.schedule import shift_sigma, unshift_sigma
from cf_ref.time_grid import AUTHORS_SCORE_SHIFT, nearest_grid_sigma, rounded_sigma, train_grid


def authors_scheduler_sigmas(shift: float, n: int = 1000) -> torch.Tensor:
    """FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True).set_timesteps(n), written out in float32 as
    utils/scheduler.py computes it: linspace(1, 0, n + 1)[:-1], then s·σ / (1 + (s - 1)σ)."""
    sigmas = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float32)[:-1]
    return shift * sigmas / (1 + (shift - 1) * sigmas)


@pytest.mark.parametrize("shift", [5.0, AUTHORS_SCORE_SHIFT])
def test_train_grid_is_the_authors_scheduler(shift):
    g = train_grid(shift)
    assert g.shape == (1000,) and float(g[0]) == 1.0 and float(g[-1]) > 0  # σ = 0 is not a point
    torch.testing.assert_close(g.float(), authors_scheduler_sigmas(shift), rtol=0, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20), st.sampled_from([1.0, 5.0, 8.0]))
def test_nearest_grid_sigma_is_the_brute_force_argmin(levels, shift):
    grid = train_grid(shift, 50)
    sigma = torch.tensor(levels, dtype=torch.float64)
    expected = [min(grid.tolist(), key=lambda p: abs(p - s)) for s in levels]
    assert nearest_grid_sigma(sigma, grid).tolist() == expected
    assert torch.equal(nearest_grid_sigma(grid, grid), grid)  # grid points are fixed


def test_dmd_floor_on_the_shift_8_grid_in_closed_form():
    """σ = 0.02 (the DMD floor) on the authors' score grid: unshifted by 8 it is u = 0.02 / (8 - 7·0.02) = 0.002545,
    between the grid's u = 0.002 and 0.003; shift_8(0.003) = 0.023506 is the nearer point (17.5 % above 0.02)."""
    u = float(unshift_sigma(0.02, 8.0))
    assert 0.002 < u < 0.003
    lo, hi = float(shift_sigma(0.002, 8.0)), float(shift_sigma(0.003, 8.0))
    expected = hi if hi - 0.02 < 0.02 - lo else lo
    got = float(nearest_grid_sigma(torch.tensor([0.02], dtype=torch.float64), train_grid(8.0)))
    assert got == pytest.approx(expected, abs=1e-12) and got / 0.02 - 1 == pytest.approx(0.1753, abs=1e-4)


@settings(max_examples=40, deadline=None)
@given(st.floats(1e-3, 1.0))
def test_rounded_sigma_is_the_nearest_bf16_timestep(sigma):
    t = 1000 * sigma
    r = 1000 * float(rounded_sigma(torch.tensor([sigma], dtype=torch.float64))[0])
    spacing = 2.0 ** (math.floor(math.log2(t)) - 7)  # bf16: 8 significant bits
    assert abs(r - t) <= spacing / 2 + 1e-9
    assert r / spacing == pytest.approx(round(r / spacing), abs=1e-9)  # on the bf16 lattice


def test_rounded_sigma_published_cd_examples_and_float32_tellback():
    """t = 995.763 (the 48-step grid's n = 1) is told as 996, 982.143 (n = 4) as 984; a float32 level of the rounded
    timestep gives the integer back through the model's t = 1000σ."""
    sigma = torch.tensor([0.995763, 0.982143, 0.25], dtype=torch.float32)
    r = rounded_sigma(sigma)
    assert r.dtype == torch.float32
    assert (r * 1000).tolist() == [996.0, 984.0, 250.0]


def test_boundary_errors():
    with pytest.raises(ValueError, match="num_steps"):
        train_grid(5.0, 0)
    with pytest.raises(ValueError, match="1-D"):
        nearest_grid_sigma(torch.tensor([0.5]), torch.zeros(2, 2))
