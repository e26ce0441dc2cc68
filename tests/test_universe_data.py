"""Universes as data (issue 25 items 1-2, data side): listings, delistings, membership, actions.

Leading NaNs of a column mean "not listed yet", trailing NaNs "delisted": accepted by the
command line's loaders and by the Python API's check alike; a NaN inside a listing stays
an error whose message says what each repair would do, in bars. ``data.universe`` narrows
the tradable set, ``data.actions`` gives splits and dividends, and ``Bars.adjusted()`` is
checked against a plain per-bar loop of the holder's total return.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtest.config import DataConfig
from backtest.data import Bars, check_bars, load_bars, read_prices, validate_prices
from backtest.data._actions import read_actions
from backtest.data._files import read_bars
from backtest.data._universe import universe_summary
from backtest.data._validate import validate_bars
from backtest.errors import ConfigError, DataValidationError, hint

NAN = np.nan
DAYS = pd.bdate_range("2024-01-01", periods=8, name="date")


def _wide(**columns: list[float]) -> pd.DataFrame:
    return pd.DataFrame(columns, index=DAYS[: len(next(iter(columns.values())))])


def _panel() -> pd.DataFrame:
    """A lists on day 0, B lists late (day 2), C delists early (last price day 5)."""
    return _wide(
        A=[10.0, 10.1, 10.2, 10.3, 10.4, 10.5, 10.6, 10.7],
        B=[NAN, NAN, 20.0, 20.5, 21.0, 20.8, 20.9, 21.2],
        C=[5.0, 5.1, 5.2, 5.3, 5.2, 5.1, NAN, NAN],
    )


def _long(frame: pd.DataFrame, **extra: dict[tuple[str, str], float]) -> pd.DataFrame:
    """A long table with rows only while each asset is listed."""
    rows = []
    for day, row in frame.iterrows():
        for symbol, close in row.items():
            if np.isfinite(close):
                rows.append({"date": day.strftime("%Y-%m-%d"), "symbol": symbol, "close": close})
    table = pd.DataFrame(rows)
    for column, cells in extra.items():
        table[column] = [
            cells.get((d, s), NAN) for d, s in zip(table.date, table.symbol, strict=True)
        ]
    return table


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "backtest.data"]


# --- listings and delistings are data ------------------------------------------------------


def test_leading_and_trailing_nans_are_listings_everywhere(tmp_path, caplog) -> None:
    frame = _panel()
    out = validate_prices(frame)
    assert np.array_equal(np.isnan(out.to_numpy()), np.isnan(frame.to_numpy()))
    check_bars(frame)  # the Python API accepts it too, silently
    check_bars(Bars(frame, tradable=frame.notna()))
    path = tmp_path / "prices.csv"
    _long(frame).to_csv(path, index=False)
    assert read_prices(path).equals(out)
    with caplog.at_level(logging.INFO, logger="backtest.data"):
        bars = load_bars(DataConfig(source="csv", path=str(path)))
    assert bars.tradable is not None
    assert np.array_equal(bars.tradable.to_numpy(), frame.notna().to_numpy())
    assert "1 asset lists late, 1 delists early; trading only while listed" in _messages(caplog)


def test_the_summary_line_counts_as_the_issue_words_it(tmp_path, caplog) -> None:
    columns = {f"S{i}": [10.0 + i] * 8 for i in range(6)}
    for i in range(3):  # three list late
        columns[f"S{i}"][: i + 1] = [NAN] * (i + 1)
    for i in (4, 5):  # two delist early
        columns[f"S{i}"][-(i - 2) :] = [NAN] * (i - 2)
    path = tmp_path / "p.csv"
    _long(_wide(**columns)).to_csv(path, index=False)
    with caplog.at_level(logging.INFO, logger="backtest.data"):
        load_bars(DataConfig(source="csv", path=str(path)))
    assert "3 assets list late, 2 delist early; trading only while listed" in _messages(caplog)


def test_a_full_panel_logs_nothing_and_has_no_tradable(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="backtest.data"):
        bars = load_bars(DataConfig(n_bars=30, n_assets=2, seed=1))
    assert bars.tradable is None and not _messages(caplog)


def test_ohlc_outside_a_listing_is_not_checked_inside_it_is(tmp_path) -> None:
    frame = _panel()
    opens = frame * 0.99
    opens.iloc[0, 1] = -5.0  # B is not listed on day 0: whatever is there is ignored
    bars = validate_bars(Bars(frame, open=opens))
    assert np.isnan(bars.open.iloc[0, 1]) and bars.open.iloc[3, 1] == opens.iloc[3, 1]
    check_bars(Bars(frame, open=opens))
    opens.iloc[3, 1] = NAN  # inside B's listing: an error, named
    for check in (validate_bars, check_bars):
        with pytest.raises(DataValidationError, match="missing") as info:
            check(Bars(frame, open=opens))
        error = info.value
        assert (error.column, error.symbol, error.timestamp) == ("open", "B", DAYS[3])


def test_a_column_without_any_price_is_an_asset_not_listed_in_the_window(caplog) -> None:
    frame = _panel().assign(D=NAN)  # e.g. a walk-forward window before D lists
    check_bars(frame)
    assert np.isnan(validate_prices(frame)["D"]).all()
    with caplog.at_level(logging.INFO, logger="backtest.data"):
        assert universe_summary(Bars(frame)).startswith("2 assets list late, 1 delists early")
    for check in (validate_prices, check_bars):
        with pytest.raises(DataValidationError, match="no prices: every close") as info:
            check(frame * NAN)
        assert hint(info.value) is None or "repair" not in hint(info.value)


# --- a NaN inside a listing stays an error, and the hint says what each repair does --------


def test_a_nan_inside_a_listing_names_the_listing_and_each_repairs_cost_in_bars() -> None:
    frame = _panel()
    frame.iloc[4, 1] = NAN  # B, inside its listing (day 2 to day 7)
    with pytest.raises(DataValidationError) as info:
        validate_prices(frame)
    error = info.value
    assert (error.column, error.timestamp, error.count) == ("B", DAYS[4], 1)
    text = str(error)
    assert f"inside its listing ({DAYS[2]} to {DAYS[7]}" in text
    assert "data.repair=ffill carries the previous close over these 1 bar(s) of 'B'" in text
    assert "data.repair=drop drops the 1 of 8 bars" in text
    assert hint(error) is None  # the message names its repairs: no generic hint beside it
    with pytest.raises(DataValidationError) as api:
        check_bars(frame)  # the Python API: the same error
    assert str(api.value) == text


def test_ffill_fills_inside_listings_only_and_keeps_every_bar(caplog) -> None:
    frame = _panel()
    frame.iloc[4, 1] = NAN
    with caplog.at_level(logging.WARNING, logger="backtest.data"):
        out = validate_prices(frame, repair="ffill")
    assert list(out.index) == list(DAYS)  # nothing truncated
    assert out["B"].iloc[4] == out["B"].iloc[3]
    assert np.isnan(out["B"].iloc[:2]).all() and np.isnan(out["C"].iloc[6:]).all()  # no zombie
    assert any("'B'" in m and "1 NaN" in m for m in _messages(caplog))


def test_drop_drops_only_bars_with_a_nan_inside_a_listing() -> None:
    frame = _panel()
    frame.iloc[4, 1] = NAN
    out = validate_prices(frame, repair="drop")
    assert list(out.index) == [d for i, d in enumerate(DAYS) if i != 4]
    assert np.isnan(out["B"].iloc[:2]).all()


def test_the_hint_never_proposes_a_drop_that_empties_the_panel() -> None:
    frame = _wide(A=[1.0, NAN, 1.0, 2.0], B=[1.0, 2.0, NAN, 2.0], C=[1.0, 1.0, 1.0, 1.0])
    frame.iloc[0, 2] = -1.0
    frame.iloc[3, 2] = 0.0
    with pytest.raises(DataValidationError) as info:
        validate_prices(frame)
    assert "data.repair=drop would drop every bar" in str(info.value)
    with pytest.raises(DataValidationError, match="no bars left"):
        validate_prices(frame, repair="drop")


# --- membership: data.universe -------------------------------------------------------------


def _prices_file(tmp_path: Path, frame: pd.DataFrame | None = None, **extra) -> Path:
    path = tmp_path / "prices.csv"
    _long(_panel() if frame is None else frame, **extra).to_csv(path, index=False)
    return path


def test_membership_narrows_tradable_and_can_exclude_an_asset_with_prices(tmp_path) -> None:
    members = tmp_path / "members.csv"
    pd.DataFrame(
        {
            "symbol": ["A", "A", "B", "C"],
            "start": ["2024-01-01", "2024-01-08", "2024-01-01", "2024-01-03"],
            "end": ["2024-01-03", "", "2024-01-10", "2024-01-05"],
        }
    ).to_csv(members, index=False)
    config = DataConfig(source="csv", path=str(_prices_file(tmp_path)), universe=str(members))
    bars = load_bars(config)
    want = np.array(
        [  # A: days 0-2 and from day 5 (2024-01-08) on; B: listed days 2-7; C: days 2-4
            [1, 0, 0], [1, 0, 0], [1, 1, 1], [0, 1, 1], [0, 1, 1], [1, 1, 0], [1, 1, 0],
            [1, 1, 0],
        ],
        dtype=bool,
    )  # fmt: skip
    assert np.array_equal(bars.tradable.to_numpy(), want)
    assert np.array_equal(bars.tradable_mask(), want)
    assert np.isfinite(bars.close.iloc[3, 0])  # A still has prices while excluded


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"symbol": ["ZZZ"], "start": ["2024-01-01"], "end": [""]}, r"symbol\(s\) \['ZZZ'\]"),
        ({"symbol": ["A"], "start": ["2024-13-01"], "end": [""]}, "bad start date"),
        ({"symbol": ["A"], "start": [""], "end": ["2024-01-05"]}, "no start date"),
        ({"symbol": ["A"], "start": ["2024-01-05"], "end": ["2024-01-02"]}, "before it starts"),
        ({"symbol": ["A"], "start": ["2024-01-05"]}, "column 'end' missing"),
    ],
    ids=["unknown-symbol", "bad-date", "no-start", "end-before-start", "no-end-column"],
)
def test_a_bad_membership_table_is_a_named_error(tmp_path, rows, message) -> None:
    members = tmp_path / "members.csv"
    pd.DataFrame(rows).to_csv(members, index=False)
    config = DataConfig(source="csv", path=str(_prices_file(tmp_path)), universe=str(members))
    with pytest.raises(ConfigError, match=message) as info:
        load_bars(config)
    assert info.value.key == "data.universe"


def test_a_missing_membership_file_is_named(tmp_path) -> None:
    config = DataConfig(
        source="csv", path=str(_prices_file(tmp_path)), universe=str(tmp_path / "nope.csv")
    )
    with pytest.raises(ConfigError, match="file not found") as info:
        load_bars(config)
    assert info.value.key == "data.universe" and "nope.csv" in str(info.value)


def test_membership_rows_of_unselected_symbols_are_ignored(tmp_path) -> None:
    members = tmp_path / "members.parquet"
    table = {"symbol": ["A", "B"], "start": ["2024-01-02", "2024-01-01"], "end": [None, None]}
    pd.DataFrame(table).to_parquet(members)
    config = DataConfig(
        source="csv", path=str(_prices_file(tmp_path)), universe=str(members), symbols=["A"]
    )
    bars = load_bars(config)
    assert bars.tradable["A"].tolist() == [False] + [True] * 7


# --- delisting returns ---------------------------------------------------------------------


def test_a_delisting_return_column_fills_bars_delist_return(tmp_path) -> None:
    day = DAYS[5].strftime("%Y-%m-%d")
    path = _prices_file(tmp_path, delist_return={(day, "C"): -0.4})
    bars = load_bars(DataConfig(source="csv", path=str(path)))
    values = bars.delist_return.to_numpy()
    assert values[5, 2] == -0.4 and np.isnan(np.delete(values.ravel(), 5 * 3 + 2)).all()


@pytest.mark.parametrize(
    ("cell", "message"),
    [(("2024-01-03", "C"), "off the asset's last listed bar"),
     ((DAYS[7].strftime("%Y-%m-%d"), "A"), "off the asset's last listed bar")],
    ids=["not-last-bar", "never-delists"],
)  # fmt: skip
def test_a_misplaced_delisting_return_is_named(tmp_path, cell, message) -> None:
    path = _prices_file(tmp_path, delist_return={cell: -0.1})
    with pytest.raises(DataValidationError, match=message) as info:
        load_bars(DataConfig(source="csv", path=str(path)))
    assert info.value.column == "delist_return" and info.value.symbol == cell[1]
    assert info.value.timestamp == pd.Timestamp(cell[0])


def test_a_non_numeric_delisting_return_is_named(tmp_path) -> None:
    path = _prices_file(tmp_path, delist_return={(DAYS[5].strftime("%Y-%m-%d"), "C"): "gone"})
    with pytest.raises(DataValidationError, match="non-numeric delisting return"):
        read_bars(path)


# --- corporate actions: data.actions -------------------------------------------------------


def _actions(tmp_path: Path, rows: list[tuple], name: str = "actions.csv") -> Path:
    path = tmp_path / name
    frame = pd.DataFrame(rows, columns=["date", "symbol", "split", "dividend"])
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("name", ["actions.csv", "actions.parquet"])
def test_actions_become_split_and_dividend_frames(tmp_path, name) -> None:
    rows = [("2024-01-04", "A", 2.0, 0.0), ("2024-01-05", "B", None, 0.3)]
    path = _actions(tmp_path, rows, name)
    bars = load_bars(DataConfig(source="csv", path=str(_prices_file(tmp_path)), actions=str(path)))
    assert bars.split.iloc[3, 0] == 2.0 and (bars.split.to_numpy() != 1).sum() == 1
    assert bars.dividend.iloc[4, 1] == 0.3 and (bars.dividend.to_numpy() != 0).sum() == 1
    assert bars.has_actions


def test_an_action_between_bars_takes_effect_on_the_next_bar(tmp_path, caplog) -> None:
    weekend = (DAYS[4] + pd.Timedelta(days=1)).strftime("%Y-%m-%d")  # a Saturday
    path = _actions(
        tmp_path,
        [(weekend, "A", 1.0, 0.2), (weekend, "A", None, None), ("2023-12-01", "A", 3.0, 0.0)][::2],
    )
    with caplog.at_level(logging.INFO, logger="backtest.data"):
        split, dividend = read_actions(path, _panel())
    assert dividend.iloc[5, 0] == 0.2 and split.to_numpy().prod() == 1.0
    logs = _messages(caplog)
    assert any("take effect on the next bar" in m and str(DAYS[5]) in m for m in logs), logs
    assert any("1 action(s) outside the data's dates ignored" in m for m in logs), logs


def test_two_actions_on_one_bar_combine_in_date_order(tmp_path) -> None:
    # Saturday: 0.5 per old share, then a 2-for-1 split on Monday: 0.25 per new share
    path = _actions(tmp_path, [("2024-01-06", "A", 1.0, 0.5), ("2024-01-08", "A", 2.0, 0.0)])
    split, dividend = read_actions(path, _panel())
    assert split.iloc[5, 0] == 2.0 and dividend.iloc[5, 0] == 0.25


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("2024-01-04", "ZZZ", 2.0, 0.0)], r"symbol\(s\) \['ZZZ'\]"),
        ([("2024-01-04", "A", 0.0, 0.0)], "split must be a positive number"),
        ([("2024-01-04", "A", -2.0, 0.0)], "split must be a positive number"),
        ([("2024-01-04", "A", 1.0, -0.1)], "dividend must be a finite number >= 0"),
        ([("2024-01-04", "A", 1.0, "x")], "non-numeric dividend"),
        ([("20240104x", "A", 2.0, 0.0)], "bad date"),
        ([("2024-01-04", "A", 2.0, 0.0), ("2024-01-04", "A", 1.0, 0.1)], "repeats"),
        ([("2024-01-01", "B", 2.0, 0.0)], "not listed"),
        ([("2024-01-10", "C", 1.0, 0.1)], "not listed"),
    ],
    ids=["unknown-symbol", "zero-split", "negative-split", "negative-dividend", "text",
         "bad-date", "repeated", "before-listing", "after-delisting"],
)  # fmt: skip
def test_bad_actions_are_named_errors(tmp_path, rows, message) -> None:
    path = _actions(tmp_path, rows)
    config = DataConfig(source="csv", path=str(_prices_file(tmp_path)), actions=str(path))
    with pytest.raises(ConfigError, match=message) as info:
        load_bars(config)
    assert info.value.key == "data.actions"


def test_python_api_actions_on_unlisted_bars_are_refused() -> None:
    frame = _panel()
    split = pd.DataFrame(1.0, index=frame.index, columns=frame.columns)
    split.iloc[0, 1] = 2.0  # B is not listed on day 0
    with pytest.raises(DataValidationError, match="not listed") as info:
        check_bars(Bars(frame, split=split))
    assert (info.value.column, info.value.symbol) == ("split", "B")


# --- the adjusted view strategies see ------------------------------------------------------


def _adjusted_by_loop(close: np.ndarray, split: np.ndarray, dividend: np.ndarray) -> np.ndarray:
    """Independent reference: from each listing's first close, compound the holder's return."""
    n, a = close.shape
    out = np.full_like(close, np.nan)
    for j in range(a):
        listed = [t for t in range(n) if np.isfinite(close[t, j])]
        out[listed[0], j] = close[listed[0], j]
        for t in listed[1:]:
            gross = split[t, j] * (close[t, j] + dividend[t, j]) / close[t - 1, j]
            out[t, j] = out[t - 1, j] * gross
    return out


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 7), st.integers(0, 2), st.sampled_from([1.0, 2.0, 0.5, 3.0, 1.5]),
            st.sampled_from([0.0, 0.0, 0.05, 0.3, 1.0]),
        ),
        max_size=6,
    ),
    st.integers(1, 8),
)  # fmt: skip
def test_adjusted_prices_carry_the_holders_total_return(actions, cut) -> None:
    frame = _panel()
    listed = frame.notna().to_numpy()
    split = np.ones(frame.shape)
    dividend = np.zeros(frame.shape)
    for t, j, s, d in actions:
        if listed[t, j]:
            split[t, j], dividend[t, j] = s, d
    wide = lambda v: pd.DataFrame(v, index=frame.index, columns=frame.columns)  # noqa: E731
    volume = wide(np.where(listed, 1000.0, np.nan))
    bars = Bars(frame, volume=volume, split=wide(split), dividend=wide(dividend),
                tradable=frame.notna())  # fmt: skip
    adj = bars.adjusted()
    want = _adjusted_by_loop(frame.to_numpy(), split, dividend)
    np.testing.assert_allclose(adj.close.to_numpy(), want, rtol=1e-12)
    assert adj.split is None and adj.dividend is None and adj.tradable is bars.tradable
    # no look-ahead: the view of the first bars is the first bars of the view, exactly
    np.testing.assert_array_equal(
        bars.iloc[:cut].adjusted().close.to_numpy(), adj.close.to_numpy()[:cut]
    )
    first = [np.flatnonzero(listed[:, j])[0] for j in range(3)]
    shares = split.copy()
    shares[first, [0, 1, 2]] = 1.0  # an action on a listing's first bar adjusts nothing
    np.testing.assert_allclose(adj.volume.to_numpy(), volume.to_numpy() / np.cumprod(shares, 0))


def test_bars_without_actions_are_their_own_adjusted_view() -> None:
    bars = Bars(_panel())
    assert bars.adjusted() is bars


def test_a_split_leaves_no_jump_in_the_adjusted_view() -> None:
    frame = _wide(A=[100.0, 102.0, 51.5, 52.0])
    split = _wide(A=[1.0, 1.0, 2.0, 1.0])
    adj = Bars(frame, split=split).adjusted().close["A"].tolist()
    assert adj == pytest.approx([100.0, 102.0, 103.0, 104.0])


# --- the shipped panel ---------------------------------------------------------------------


def test_the_shipped_universe_panel(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="backtest.data"):
        bars = load_bars(DataConfig(source="universe_sample"))
    assert bars.close.shape == (756, 16)
    assert "3 assets list late, 2 delist early; trading only while listed" in _messages(caplog)
    assert bars.split["CRUX"].max() == 2.0 and (bars.split.to_numpy() != 1).sum() == 1
    assert (bars.dividend.to_numpy() > 0).sum() == 24
    assert bars.delist_return["HALO"].dropna().tolist() == [-0.35]
    adj = bars.adjusted().close["CRUX"]
    jump = adj.pct_change().abs().max()
    assert jump < 0.1 and bars.close["CRUX"].pct_change().abs().max() > 0.45


def test_tables_may_hold_comments_and_a_worker_reads_them_only_under_its_roots(tmp_path) -> None:
    from backtest.data._reading import confine_reads

    members = tmp_path / "members.csv"
    members.write_text("# members.csv: who is in the index\nsymbol,start,end\n\nA,2024-01-03,\n")
    config = DataConfig(source="csv", path=str(_prices_file(tmp_path)), universe=str(members))
    assert load_bars(config).tradable["A"].tolist() == [False, False] + [True] * 6
    previous = confine_reads([tmp_path / "elsewhere"])
    try:
        with pytest.raises(ConfigError, match=r"data\.actions .* outside the folders") as info:
            read_actions(members, _panel())  # refused before the file is looked at
        assert info.value.key == "data.actions"
    finally:
        confine_reads(previous)


def test_the_fingerprint_covers_membership_and_actions() -> None:
    from backtest.data import data_fingerprint

    frame = _panel()
    split = pd.DataFrame(1.0, index=frame.index, columns=frame.columns)
    base = data_fingerprint(Bars(frame))
    assert base == data_fingerprint(frame)  # bars without universe fields hash as their closes
    members = frame.notna()
    members.iloc[3, 0] = False
    split2 = split.copy()
    split2.iloc[3, 0] = 2.0
    others = [Bars(frame, tradable=members), Bars(frame, split=split), Bars(frame, split=split2)]
    assert len({base, *map(data_fingerprint, others)}) == 4
