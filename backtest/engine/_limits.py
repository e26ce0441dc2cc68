"""Portfolio limits and the volatility-targeting overlay, applied to target weights.

In this order, at each bar t, from data up to t only:

1. ``long_only``: a short target is clipped to 0;
2. ``max_weight``: an asset's weight beyond ``±max_weight`` is clipped to it;
3. ``target_volatility``: the book is scaled by ``target / realised``, where realised is
   the annualised standard deviation (``ddof=1``) of the returns the unscaled book
   (after 1-2) would have earned over the previous ``vol_lookback`` bars
   (``sum_j w[s-1, j] r[s, j]`` for ``s`` in ``t-L+1..t``); before ``L`` such returns
   exist, or when realised is 0, the book is not scaled;
4. ``max_weight`` again, on the scaled book: the overlay never lifts an asset beyond it;
5. ``max_gross_leverage``: when the sum of absolute weights exceeds it, every weight is
   scaled down by the same factor (this also caps the overlay).

The limits bind last: after 3 nothing scales a weight up, so every target weight is
within ``±max_weight``, their absolute sum within ``max_gross_leverage`` and none is
short with ``long_only``, whatever the overlay asks for.

A bar counts as "limited" when 1, 2, 4 or 5 changed a weight (4 is the overlay's
clipping); the metric ``limit_scaled_fraction`` is the fraction of such bars.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray


@numba.njit(cache=True, nogil=True)
def apply_limits(
    target: NDArray[np.float64], close: NDArray[np.float64], long_only: bool, max_weight: float,
    max_gross: float, target_vol: float, vol_lookback: int, periods_per_year: float,
    out: NDArray[np.float64], limited: NDArray[np.bool_],
) -> None:  # pragma: no cover - compiled; equal to tests/engine_reference.py  # fmt: skip
    """Write the limited (and vol-scaled) weights into ``out``, flags into ``limited``.

    ``max_weight``/``max_gross`` of ``inf`` and ``target_vol`` of NaN mean off.
    """
    n, a = target.shape
    book = np.zeros(n)  # returns of the unscaled book
    base = np.zeros((n, a))  # weights after 1-2 (unscaled)
    for t in range(n):
        hit = False
        for j in range(a):
            w = target[t, j]
            if w != w:
                w = 0.0
            if long_only and w < 0.0:
                w = 0.0
                hit = True
            if abs(w) > max_weight:
                w = max_weight if w > 0.0 else -max_weight
                hit = True
            base[t, j] = w
            out[t, j] = w
        if t > 0 and target_vol == target_vol:  # the book's returns feed the overlay only
            s = 0.0
            for j in range(a):
                s += base[t - 1, j] * (close[t, j] / close[t - 1, j] - 1.0)
            book[t] = s
        if target_vol == target_vol and t >= vol_lookback:
            window = book[t - vol_lookback + 1 : t + 1]  # (a view: nothing allocated)
            mean = 0.0
            for x in window:
                mean += x
            mean /= vol_lookback
            var = 0.0
            for x in window:
                var += (x - mean) ** 2
            sigma = math.sqrt(var / (vol_lookback - 1) * periods_per_year)
            if sigma > 0.0:
                scale = target_vol / sigma
                for j in range(a):  # 3 then 4: the overlay, clipped to max_weight
                    w = out[t, j] * scale
                    if abs(w) > max_weight:
                        w = max_weight if w > 0.0 else -max_weight
                        hit = True
                    out[t, j] = w
        gross = 0.0
        for j in range(a):
            gross += abs(out[t, j])
        if gross > max_gross:  # 5: scaled down only, so 1, 2 and 4 still hold
            cap = max_gross / gross
            for j in range(a):
                out[t, j] *= cap
            hit = True
        limited[t] = hit


def limits_active(
    long_only: bool,
    max_weight: float | None,
    max_gross_leverage: float | None,
    target_volatility: float | None,
) -> bool:
    """Whether any limit can change a target (else :func:`unlimited` is the whole answer)."""
    bounded = max_weight is not None and not math.isinf(max_weight)
    bounded = bounded or (max_gross_leverage is not None and not math.isinf(max_gross_leverage))
    return bool(long_only) or bounded or target_volatility is not None


def unlimited(target: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """:func:`limit_targets` with no limit: NaN is flat, no bar bound."""
    target = np.asarray(target, dtype=np.float64)
    return np.where(np.isnan(target), 0.0, target), np.zeros(target.shape[0], dtype=bool)


def limit_targets(
    target: NDArray[np.float64],
    close: NDArray[np.float64],
    *,
    long_only: bool = False,
    max_weight: float | None = None,
    max_gross_leverage: float | None = None,
    target_volatility: float | None = None,
    vol_lookback: int = 63,
    periods_per_year: float = 252.0,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Limited target weights and the per-bar "a limit bound" flags (see the module docstring)."""
    if not limits_active(long_only, max_weight, max_gross_leverage, target_volatility):
        return unlimited(target)
    out = np.empty_like(target, dtype=np.float64)
    limited = np.zeros(target.shape[0], dtype=bool)
    apply_limits(
        np.ascontiguousarray(target, dtype=np.float64),
        np.ascontiguousarray(close, dtype=np.float64),
        bool(long_only),
        math.inf if max_weight is None else float(max_weight),
        math.inf if max_gross_leverage is None else float(max_gross_leverage),
        math.nan if target_volatility is None else float(target_volatility),
        int(vol_lookback),
        float(periods_per_year),
        out,
        limited,
    )
    return out, limited
