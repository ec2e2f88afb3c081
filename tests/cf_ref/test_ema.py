import pytest
import torch
from torch import nn

from cf_ref.ema import EmaFirstUpdate, ema_copy, ema_decay_at, ema_update


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


@pytest.mark.parametrize("first", list(EmaFirstUpdate))
def test_ema_start_modes_against_the_closed_form_average(first):
    """k updates with weights θ_1…θ_k from θ_0: BLEND gives μ^k θ_0 + (1-μ) Σ μ^(k-i) θ_i (the authors' EMA_FSDP);
    COPY gives the same sum started at θ_1 (no weight on θ_0)."""
    mu, k = 0.9, 4
    src = nn.Linear(3, 2, bias=False)
    tgt = ema_copy(src)
    weights = [src.weight.detach().clone()]  # θ_0
    for i in range(k):
        with torch.no_grad():
            src.weight.copy_(torch.randn(2, 3, generator=torch.Generator().manual_seed(i)))
        weights.append(src.weight.detach().clone())
        ema_update(tgt, src, ema_decay_at(i, mu, first))
    if first is EmaFirstUpdate.BLEND:
        expected = mu**k * weights[0] + (1 - mu) * sum(mu ** (k - i) * weights[i] for i in range(1, k + 1))
    else:
        expected = mu ** (k - 1) * weights[1] + (1 - mu) * sum(mu ** (k - i) * weights[i] for i in range(2, k + 1))
    torch.testing.assert_close(tgt.weight, expected)


def test_ema_decay_at_copies_only_the_first_update_of_copy_mode():
    assert ema_decay_at(0, 0.99) == 0.0 and ema_decay_at(1, 0.99) == 0.99
    assert ema_decay_at(0, 0.99, EmaFirstUpdate.BLEND) == 0.99
    with pytest.raises(ValueError, match="EmaFirstUpdate"):
        ema_decay_at(0, 0.99, "blend")
    with pytest.raises(ValueError, match=">= 0"):
        ema_decay_at(-1, 0.99)
