"""toy.plots: every figure of a run re-drawn from its saved files alone, and a clear error without them."""

import pytest

from cf_ref.errors import UserError
from tests.toy.experiment_configs import tiny_config
from toy.data import DatasetKind, DatasetSpec
from toy.plots import draw_all
from toy.run_files import write_outputs
from toy.runner import run


def test_every_figure_redrawn_from_the_files(tmp_path):
    datasets = (
        DatasetSpec(DatasetKind.SHARED_MODE_MIXTURE, dim=2, num_modes=3),
        DatasetSpec(DatasetKind.AR1_GAUSSIAN, dim=1),
    )
    metrics, plots, _ = run(tiny_config(steps=20, datasets=datasets), seed=0, progress=False)
    out = write_outputs(tmp_path / "run", metrics, plots)
    paths = draw_all(out, tmp_path / "figures", dpi=40)
    names = {p.name for p in paths if p.stat().st_size > 0}
    for name in ("mixture_k3_d2", "gaussian_ar1_d1"):
        for stem in (f"samples_{name}", f"trajectories_{name}", f"conditional_expectation_{name}"):
            assert {f"{stem}.png", f"{stem}.pdf"} <= names
    assert {"errors.png", "errors.pdf"} <= names


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="is not a finished `cf-ref toy run` folder"):
        draw_all(tmp_path)
