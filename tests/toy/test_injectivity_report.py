"""toy.injectivity_report: the pairs' non-injectivity index against the Gaussian closed form, and its table."""

import pytest
import torch

from cf_ref.recipes import PairTeacher
from toy.closed_form import frame_variance, lost_variance
from toy.data import ar1_gaussian, independent_gaussian
from toy.injectivity_report import injectivity_table, pair_injectivity


def test_gaussian_index_is_the_lost_variance_share_and_causal_pairs_are_injective():
    data = ar1_gaussian(3, 1)
    eta = pair_injectivity(data, samples=256, resamples=32, generator=torch.Generator().manual_seed(0))
    want = (lost_variance(data) / frame_variance(data)).tolist()  # η_i = Σ_{j>i} ||R_ij||² / tr Σ_ii
    assert eta[PairTeacher.BIDIRECTIONAL.value] == pytest.approx(want, abs=0.06)
    assert max(eta[PairTeacher.AR.value]) < 1e-6


def test_independent_frames_give_injective_pairs_from_both_teachers():
    eta = pair_injectivity(independent_gaussian(3, 1), 64, 8, torch.Generator().manual_seed(1))
    assert max(eta[PairTeacher.BIDIRECTIONAL.value]) < 1e-6 and max(eta[PairTeacher.AR.value]) < 1e-6


def test_table_has_a_row_per_dataset_and_pair_teacher():
    table = injectivity_table(frames=2, dim=1, samples=16, resamples=4, seed=0).splitlines()
    assert table[0] == "| dataset | pairs | frame 0 | frame 1 |"
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]) for line in table[2:]}
    assert ("gaussian_ar1_d1", "bidirectional") in rows and ("gaussian_ar1_d1", "ar") in rows and len(rows) == 6
