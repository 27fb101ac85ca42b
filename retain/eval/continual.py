"""Continual-learning metrics from the accuracy matrix, with Avalanche's definitions.

`R[i][j]` is the accuracy on session j's questions after writing sessions 0..i; `R0[j]` is the accuracy
before any write. With T sessions (last row T-1):

- ACC = mean_j R[T-1][j]
- BWT = mean_{j<T-1} (R[T-1][j] - R[j][j]); forgetting = -BWT (first-learned vs last, `forgetting_bwt.py`)
- FWT = mean_{j>0} (R[j-1][j] - R0[j]) (`forward_transfer.py`)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Matrix = Sequence[Sequence[float]]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def acc(R: Matrix) -> float:
    return _mean(list(R[-1]))


def bwt(R: Matrix) -> float:
    T = len(R)
    return _mean([R[T - 1][j] - R[j][j] for j in range(T - 1)])


def forgetting(R: Matrix) -> float:
    b = bwt(R)
    return -b if not math.isnan(b) else b


def fwt(R: Matrix, R0: Sequence[float]) -> float:
    return _mean([R[j - 1][j] - R0[j] for j in range(1, len(R))])


def learning_curve(R: Matrix) -> list[float]:
    """Mean accuracy over the sessions written so far, after each write."""
    return [_mean(list(R[i][: i + 1])) for i in range(len(R))]


def just_written(R: Matrix) -> float:
    """Mean of R[i][i]: how well a session is answered right after it is written."""
    return _mean([R[i][i] for i in range(len(R))])
