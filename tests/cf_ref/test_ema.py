import pytest
import torch
from torch import nn

from cf_ref.ema import ema_copy, ema_update


def test_ema_update_formula_and_frozen_copy():
    src = nn.Linear(3, 2)
    tgt = ema_copy(src)
    assert not any(p.requires_grad for p in tgt.parameters())
    old = {k: v.clone() for k, v in tgt.state_dict().items()}
    with torch.no_grad():
        for p in src.parameters():
            p.add_(1.0)
    ema_update(tgt, src, 0.9)
    for k, v in tgt.state_dict().items():
        torch.testing.assert_close(v, 0.9 * old[k] + 0.1 * src.state_dict()[k])
    ema_update(tgt, src, 0.0)
    torch.testing.assert_close(tgt.weight, src.weight)
    with pytest.raises(ValueError):
        ema_update(tgt, src, 1.5)
