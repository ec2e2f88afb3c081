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


def test_ema_copies_float_buffers_and_rejects_mismatched_modules():
    src = nn.BatchNorm1d(3)
    tgt = ema_copy(src)
    src.running_mean.fill_(2.0)
    src.num_batches_tracked.fill_(5)
    with torch.no_grad():
        src.weight.fill_(3.0)  # target weight starts at 1: 0.5·1 + 0.5·3 = 2
    ema_update(tgt, src, 0.5)
    torch.testing.assert_close(tgt.weight, torch.full((3,), 2.0))
    torch.testing.assert_close(tgt.running_mean, torch.full((3,), 2.0))  # float buffers are copied, not averaged
    assert int(tgt.num_batches_tracked) == 0  # integer buffers are left alone
    with pytest.raises(KeyError, match="lacks"):
        ema_update(nn.Linear(3, 2), nn.Linear(3, 2, bias=False), 0.9)
