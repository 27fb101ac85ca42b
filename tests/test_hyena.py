"""The Hyena operator: its FFT long convolution is a causal convolution, the operator is causal, and its
switches fail with one line."""

import pytest
import torch
import torch.nn.functional as F

from retain.errors import RetainError
from retain.models.hyena import HyenaFilter, HyenaOperator, fft_conv


def test_the_fft_long_convolution_equals_a_direct_causal_convolution():
    g = torch.Generator().manual_seed(0)
    v, h, bias = torch.randn(2, 3, 50, generator=g), torch.randn(3, 50, generator=g), torch.randn(3, generator=g)
    # y[t] = sum_{s <= t} h[s] v[t - s]: conv1d is a correlation, so the kernel is flipped and padded on the left
    direct = F.conv1d(F.pad(v, (49, 0)), h.flip(-1)[:, None], groups=3) + v * bias[:, None]
    assert torch.allclose(fft_conv(v, h, bias), direct, atol=1e-4)
    by_hand = sum(h[1, s] * v[0, 1, 20 - s] for s in range(21)) + bias[1] * v[0, 1, 20]
    assert fft_conv(v, h, bias)[0, 1, 20] == pytest.approx(float(by_hand), abs=1e-4)


@pytest.mark.parametrize("order", [2, 3])
def test_the_operator_is_causal_and_trains_its_implicit_filter(order):
    torch.manual_seed(0)
    op = HyenaOperator(16, l_max=64, order=order)
    u = torch.randn(2, 40, 16)
    y = op(u)
    assert y.shape == u.shape
    u2 = u.clone()
    u2[:, 25] += 1.0  # a change at position 25 ...
    y2 = op(u2)
    assert torch.allclose(y[:, :25], y2[:, :25], atol=1e-5) and not torch.allclose(y[:, 25:], y2[:, 25:])
    y.pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in op.filter.ffn.parameters())


def test_bad_switches_are_one_line_errors():
    with pytest.raises(RetainError, match="hyena order must be >= 2"):
        HyenaOperator(8, l_max=16, order=1)
    with pytest.raises(RetainError, match="longer than the Hyena filter's l_max=16"):
        HyenaOperator(8, l_max=16)(torch.randn(1, 17, 8))
    with pytest.raises(RetainError, match="emb_dim must be odd"):
        HyenaFilter(8, l_max=16, emb_dim=4)
