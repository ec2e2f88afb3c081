from __future__ import annotations

import pytest

from cf_ref.errors import UserError
from full.plan.gpus import GPUS, gpu


def test_named_gpus_have_dense_bf16_below_sparse_and_vendor_memory():
    assert {"h100-sxm-80gb", "h200", "a100-80gb", "b200"} <= set(GPUS)
    h100 = gpu("H100 SXM 80GB".replace("80GB", "80gb"))
    assert h100.memory == 80e9 and h100.memory_gib == pytest.approx(74.5, abs=0.05)
    assert gpu("a100").bf16_flops == 312e12
    assert gpu("H200").memory > gpu("h100").memory


def test_unknown_gpu_lists_the_known_ones():
    with pytest.raises(UserError) as err:
        gpu("rtx-2080")
    assert "rtx-2080" in str(err.value)
    for name in GPUS:
        assert name in str(err.value)
