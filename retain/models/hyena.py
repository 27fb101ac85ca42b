"""The Hyena operator (Poli et al. 2023; HyenaDNA, Nguyen et al. 2023): attention replaced by gates and long
implicit convolutions, computed by FFT in O(L log L). As the reference code (hyena-dna, `hyena.py`) builds it:

    x_0, ..., x_{N-1}, v = split(ShortConv_3(W_in u))          W_in: D -> (N + 1) D, causal depthwise, kernel 3
    for i = N-1 .. 1:  v <- v * x_i;  v <- h_i * v + bias_i * v  (h_i a causal convolution as long as the input)
    y = W_out(v * x_0)

Order N: N gates, N - 1 implicit filters. The filter h(t) = FFN(PE(t)) * (exp(-|delta_c| t) + shift) over t
in [0, 1]: PE is t with K sines and cosines, the FFN alternates Linear and Sin (sin(a x), a trainable,
initialised to `w`), delta_c spans ln(0.01)/1.5 .. ln(0.01)/0.3 over the channels (frozen). We take
shift = 0 (the reference's `src`; its standalone file uses 0.05). The filter is defined up to `l_max`
positions: longer inputs are refused. There is no KV cache: a decoder's state would be the whole input
convolved, which this module computes in parallel only (training and scoring, not incremental decoding).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from retain.errors import RetainError


def fft_conv(v: torch.Tensor, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Causal convolution of `v` (B, D, L) with the filter `h` (D, L) by real FFT at length 2L (no wrap-around),
    the first L outputs kept, plus the per-channel skip `bias` (D,) * v."""
    L = v.shape[-1]
    y = torch.fft.irfft(torch.fft.rfft(v.float(), n=2 * L) * torch.fft.rfft(h.float(), n=2 * L), n=2 * L)[..., :L]
    return (y + v.float() * bias[:, None]).to(v.dtype)


class Sin(nn.Module):
    """sin(a x) with a trainable frequency per feature."""

    def __init__(self, dim: int, w: float):
        super().__init__()
        self.freq = nn.Parameter(torch.full((1, dim), float(w)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class HyenaFilter(nn.Module):
    """The implicit long filters: h(t) = FFN(PE(t)) * exp(-|delta_c| t), `channels` of them, `l_max` long."""

    def __init__(self, channels: int, l_max: int, emb_dim: int = 5, width: int = 64, w: float = 10.0):
        super().__init__()
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise RetainError(f"hyena filter emb_dim must be odd and >= 3 (t, then sine-cosine pairs), got {emb_dim}")
        self.l_max = l_max
        t = torch.linspace(0, 1, l_max)[:, None]  # (L, 1)
        k = (emb_dim - 1) // 2
        omega = 2 * math.pi * torch.arange(l_max)[:, None] / l_max
        f = torch.linspace(1e-4, k - 1, k)[None]
        self.register_buffer("pe", torch.cat([t, torch.cos(f * omega), -torch.sin(f * omega)], -1), persistent=False)
        self.register_buffer("t", t, persistent=False)
        delta = torch.linspace(math.log(1e-2) / 1.5, math.log(1e-2) / 0.3, channels)
        self.register_buffer("decay", delta.abs()[None], persistent=False)  # frozen, as in the reference
        self.ffn = nn.Sequential(nn.Linear(emb_dim, width), Sin(width, w), nn.Linear(width, width), Sin(width, w),
                                 nn.Linear(width, width), Sin(width, w),
                                 nn.Linear(width, channels, bias=False))  # fmt: skip

    def forward(self, L: int) -> torch.Tensor:
        """The filters for the first L positions, (channels, L)."""
        if L > self.l_max:
            raise RetainError(f"sequence of {L} tokens is longer than the Hyena filter's l_max={self.l_max}; "
                              "raise l_max (the filter is defined on [0, 1] over l_max positions)")  # fmt: skip
        h = self.ffn(self.pe[:L]) * torch.exp(-self.t[:L] * self.decay)
        return h.T


class HyenaOperator(nn.Module):
    """The order-N Hyena mixer on (B, L, D) inputs: causal, no attention, no KV cache."""

    def __init__(self, d: int, l_max: int, order: int = 2, short_kernel: int = 3, **filter_kw):
        super().__init__()
        if order < 2:
            raise RetainError(f"hyena order must be >= 2 (order N has N gates and N - 1 long filters), got {order}")
        self.d, self.order = d, order
        self.in_proj = nn.Linear(d, (order + 1) * d)
        self.out_proj = nn.Linear(d, d)
        self.short = nn.Conv1d((order + 1) * d, (order + 1) * d, short_kernel, padding=short_kernel - 1,
                               groups=(order + 1) * d)  # fmt: skip
        self.filter = HyenaFilter(d * (order - 1), l_max, **filter_kw)
        self.bias = nn.Parameter(torch.randn(order - 1, d))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        L = u.shape[1]
        z = self.short(self.in_proj(u).transpose(1, 2))[..., :L]  # causal: the padding's tail cut off
        *x, v = z.split(self.d, dim=1)
        h = self.filter(L).view(self.order - 1, self.d, L)
        for i, xi in enumerate(reversed(x[1:])):
            v = fft_conv(v * xi, h[i], self.bias[i])
        return self.out_proj((v * x[0]).transpose(1, 2))
