"""Bars: open, high, low, close and volume of every asset, as wide frames on one index.

Strategies that declare ``inputs = "bars"`` receive a :class:`Bars`; the engine reads
opens for ``next_open`` fills and highs/lows for stops. :func:`~backtest.data.load_bars` loads them
for a :class:`~backtest.config.DataConfig`: long files carry OHLCV, wide files closes
only, the shipped sample OHLCV, and synthetic data gets a seeded OHLC around the same
closes as :func:`~backtest.data.synthetic_prices` for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from backtest.errors import DataValidationError

FIELDS = ("open", "high", "low", "close", "volume")
#: Optional per-bar universe and corporate-action fields (same index and columns as close).
UNIVERSE_FIELDS = ("tradable", "split", "dividend", "delist_return")


@dataclass(frozen=True, slots=True)
class Bars:
    """OHLCV of every asset: wide frames with the same ``DatetimeIndex`` and symbol columns.

    Attributes:
        close: Closes (required).
        open: Opens, or ``None`` when the data has none.
        high: Highs, or ``None``.
        low: Lows, or ``None``.
        volume: Volumes, or ``None``.
        tradable: Booleans, True where the asset may be held on that bar; ``None`` means
            wherever its close is finite (see :meth:`tradable_mask`).
        split: New shares per old share, effective on that bar (the ex-date); 1.0 when
            none. ``None`` means no splits.
        dividend: Cash per share going ex on that bar; 0.0 when none. ``None``: none.
        delist_return: NaN except on an asset's last listed bar where the data supplies a
            delisting return (applied to the holding's value on that bar).

    Prices are what is traded: unadjusted when actions are given, NaN before an asset
    lists and after it delists.

    Examples:
        >>> idx = pd.date_range("2024-01-01", periods=3, name="date")
        >>> bars = Bars.from_close(pd.DataFrame({"A": [1.0, 2.0, 3.0]}, index=idx))
        >>> bars.symbols, bars.has("open"), len(bars.iloc[:2])
        (['A'], False, 2)
    """

    close: pd.DataFrame
    open: pd.DataFrame | None = None
    high: pd.DataFrame | None = None
    low: pd.DataFrame | None = None
    volume: pd.DataFrame | None = None
    tradable: pd.DataFrame | None = None
    split: pd.DataFrame | None = None
    dividend: pd.DataFrame | None = None
    delist_return: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        """Check that every field given has the index and columns of ``close``."""
        for f in FIELDS + UNIVERSE_FIELDS:
            frame = getattr(self, f)
            if frame is None or f == "close":
                continue
            if not frame.index.equals(self.close.index) or list(frame.columns) != list(
                self.close.columns
            ):
                raise DataValidationError(
                    f"bars field {f!r} does not have the index and symbols of the closes",
                    column=f,
                )
        if self.tradable is not None and not all(
            pd.api.types.is_bool_dtype(d) for d in self.tradable.dtypes
        ):
            raise DataValidationError(
                "bars field 'tradable' must be boolean (True where the asset may be held)",
                column="tradable",
            )
        for f, ok, what in (
            ("split", lambda v: np.isfinite(v) & (v > 0), "finite and > 0 (1.0 when none)"),
            ("dividend", lambda v: np.isfinite(v) & (v >= 0), "finite and >= 0 (0.0 when none)"),
            ("delist_return", lambda v: np.isnan(v) | (v >= -1), "NaN or >= -1"),
        ):
            frame = getattr(self, f)
            if frame is None:
                continue
            bad = ~ok(frame.to_numpy(dtype=np.float64))
            if bad.any():
                row, col = np.argwhere(bad)[0]
                raise DataValidationError(
                    f"bars field {f!r} must be {what}; first bad value at "
                    f"{frame.index[row]} for {frame.columns[col]!r}",
                    column=f,
                )

    @classmethod
    def from_close(cls, close: pd.DataFrame) -> Bars:
        """Bars with closes only."""
        return cls(close=close)

    @property
    def index(self) -> pd.DatetimeIndex:
        """The bars' timestamps."""
        return pd.DatetimeIndex(self.close.index)

    @property
    def symbols(self) -> list[str]:
        """The symbols, in column order."""
        return [str(c) for c in self.close.columns]

    def __len__(self) -> int:
        """Number of bars."""
        return len(self.close)

    def has(self, field: str) -> bool:
        """Whether ``field`` (open, high, low, close, volume, or a universe field) is present."""
        return getattr(self, field) is not None

    def tradable_mask(self) -> np.ndarray:
        """``(n, a)`` booleans: ``tradable`` (when given) and a finite close."""
        mask = np.isfinite(self.close.to_numpy(dtype=np.float64))
        if self.tradable is not None:
            mask &= self.tradable.to_numpy(dtype=bool)
        return mask

    @property
    def has_actions(self) -> bool:
        """Whether any split (!= 1) or dividend (!= 0) is present."""
        split = self.split is not None and bool((self.split.to_numpy() != 1.0).any())
        div = self.dividend is not None and bool((self.dividend.to_numpy() != 0.0).any())
        return split or div

    def adjusted(self) -> Bars:
        """Split- and dividend-adjusted bars, what strategies see (fills stay at raw prices).

        Total-return prices anchored at each asset's start (the traded prices up to its
        first action, the holder's return after it: no look-ahead), the same tradable
        mask, no ``split``/``dividend`` frames; ``self`` when there are no actions. See
        :func:`backtest.data._adjusted.adjusted_bars`.
        """
        from backtest.data._adjusted import adjusted_bars

        return adjusted_bars(self)

    def require(self, *names: str, why: str) -> None:
        """Raise ``DataValidationError`` naming the first missing field and why it is needed."""
        for name in names:
            if not self.has(name):
                raise DataValidationError(
                    f"the data has no {name!r} column, needed for {why}; load a long file "
                    f"with {name} (or data=sample / data=synthetic, which have OHLC)",
                    column=name,
                )

    @property
    def iloc(self) -> _BarsSlicer:
        """Positional row slicing, ``bars.iloc[:t]``, returning :class:`Bars`."""
        return _BarsSlicer(self)

    def map(self, fn: object) -> Bars:
        """Apply ``fn(frame) -> frame`` to every present field."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return Bars(**{k: (None if v is None else fn(v)) for k, v in out.items()})  # type: ignore[operator]


class _BarsSlicer:
    def __init__(self, bars: Bars) -> None:
        self._bars = bars

    def __getitem__(self, key: slice) -> Bars:
        return self._bars.map(lambda frame: frame.iloc[key])


def as_bars(data: Bars | pd.DataFrame) -> Bars:
    """``data`` as :class:`Bars` (wide closes become bars with closes only)."""
    return data if isinstance(data, Bars) else Bars.from_close(data)


def synthetic_ohlc(close: pd.DataFrame, volatility: float, seed: int | None) -> Bars:
    """Seeded opens, highs, lows and volumes around given closes.

    The open gaps from the previous close by ``N(0, volatility / 4)`` in log terms (the
    first open equals the first close); the high and low extend beyond ``max(open,
    close)`` and ``min(open, close)`` by ``|N(0, volatility / 2)|``; volume is lognormal
    around 1e6. A separate stream of ``seed``, so the closes are those of the same seed.
    """
    rng = np.random.default_rng([0 if seed is None else int(seed), 0x0C])
    c = close.to_numpy(dtype=np.float64)
    n, a = c.shape
    gap = rng.normal(0.0, volatility / 4.0, size=(n, a))
    up = np.abs(rng.normal(0.0, volatility / 2.0, size=(n, a)))
    down = np.abs(rng.normal(0.0, volatility / 2.0, size=(n, a)))
    vol = rng.lognormal(np.log(1e6), 0.3, size=(n, a))
    o = np.empty_like(c)
    o[0] = c[0]
    o[1:] = c[:-1] * np.exp(gap[1:])
    h = np.maximum(o, c) * np.exp(up)
    lo = np.minimum(o, c) * np.exp(-down)

    def frame(values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(values, index=close.index, columns=close.columns)

    return Bars(close, frame(o), frame(h), frame(lo), frame(np.round(vol)))
