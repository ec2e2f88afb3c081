"""toy.compare_figures: what the figures draw, read back from the matplotlib figure before it is written."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import toy.compare_figures as compare_figures


@pytest.fixture
def drawn(monkeypatch):
    """The figures that ``save_figure`` would have written, by file stem (kept open for inspection)."""
    figures = {}
    monkeypatch.setattr(compare_figures, "save_figure", lambda fig, folder, stem, *a, **k: figures.update({stem: fig}))
    yield figures
    for fig in figures.values():
        plt.close(fig)


def test_dmd_curves_are_the_mean_over_seeds_with_a_min_max_band(drawn, tmp_path):
    curves = [
        [{"step": 0, "energy_distance": e0, "off_manifold_fraction": 0.5}, {"step": 10, "energy_distance": e1}]
        for e0, e1 in ((0.3, 0.1), (0.1, 0.05), (0.2, 0.0))
    ]
    compare_figures.plot_dmd_curves({"self-forcing": curves}, tmp_path / "dmd_curves")
    left, right = drawn["dmd_curves"].axes
    (line,) = left.get_lines()
    np.testing.assert_allclose(line.get_xdata(), [0, 10])
    np.testing.assert_allclose(line.get_ydata(), [0.2, 0.05])  # (0.3 + 0.1 + 0.2) / 3, (0.1 + 0.05 + 0) / 3
    band = left.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(0.0) and band[:, 1].max() == pytest.approx(0.3)
    assert np.isnan(right.get_lines()[0].get_ydata()[1])  # not measured at step 10: a gap, not 0


def test_sample_panels_one_row_per_model_one_column_per_frame(drawn, tmp_path):
    gen = torch.Generator().manual_seed(0)
    rows = {"data": torch.randn(50, 3, 2, generator=gen), "model": torch.randn(30, 3, 2, generator=gen)}
    compare_figures.plot_samples(rows, tmp_path / "samples", "title", max_points=20)
    axes = drawn["samples"].axes
    assert len(axes) == 2 * 3
    counts = [len(ax.collections[0].get_offsets()) for ax in axes]
    assert counts == [20] * 6  # the first max_points samples of every panel
    np.testing.assert_allclose(axes[4].collections[0].get_offsets(), rows["model"][:20, 1].numpy())  # row 1, frame 1
