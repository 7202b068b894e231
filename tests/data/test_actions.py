"""Backward adjustment from raw prices and events, checked against Alpha Vantage's own adjusted series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepq.data.actions import adjust, attach_actions, compare_adjusted, factors
from deepq.data.panel import DataError

# Measured on the full shared data (457 symbols, 2.18 M rows; see docs/data.md): with Alpha Vantage's own
# dividend convention the median relative difference is ~6e-13 and 454 of 457 symbols stay under 1.2e-4; the
# three exceptions (ZBRA, TRMB, TMUS) are splits missing from AV's coefficient column. With the CRSP/Yahoo
# convention (previous close) the median is 3.5e-4.
TOL_MEDIAN = 1e-9
TOL_SYMBOL_WORST = 1e-3
SHARE_WITHIN = 0.99


def test_split_and_dividend_factors():
    close = np.array([100.0, 102.0, 51.0, 50.0, 49.0])
    div = np.array([0, 0, 0, 1.0, 0])  # $1 on day 3, after a 2-for-1 split on day 2
    split = np.array([1, 1, 2.0, 1, 1])
    pf, vf = factors(close, div, split)
    m_div = 1 - 1.0 / 51.0
    np.testing.assert_allclose(pf, [m_div / 2, m_div / 2, m_div, 1, 1])
    np.testing.assert_allclose(vf, [2, 2, 1, 1, 1])
    adj = close * pf
    # total return across the ex-date equals price change plus the dividend
    assert adj[3] / adj[2] == pytest.approx((50.0 + 1.0) / 51.0)
    assert adj[2] / adj[1] == pytest.approx(51.0 * 2 / 102.0)
    pf_av, _ = factors(close, div, split, method="ex_close")
    assert pf_av[2] == pytest.approx(50.0 / 51.0 / 1.0)


def test_factors_restart_per_symbol():
    close = np.array([10.0, 10.0, 20.0, 20.0])
    pf, _ = factors(close, np.zeros(4), np.array([1, 2.0, 1, 2.0]), group=np.array(["A", "A", "B", "B"]))
    np.testing.assert_allclose(pf, [0.5, 1, 0.5, 1])


def test_dividend_not_smaller_than_price_is_an_error_naming_symbol_and_date():
    raw = pd.DataFrame(
        {
            "date": pd.to_datetime(["2013-01-01", "2013-01-02"]),
            "symbol": "ABT",
            "open": [70.0, 35.0],
            "high": [70.0, 35.0],
            "low": [70.0, 35.0],
            "close": [65.0, 35.0],
            "volume": [1, 1],
            "dividend": [0.0, 70.0],
            "split": [1.0, 1.0],
        }
    )
    with pytest.raises(DataError, match=r"symbol ABT, field 'dividend' on 2013-01-02"):
        adjust(raw)
    assert adjust(raw, invalid="ignore")["close"].tolist() == [65.0, 35.0]


def test_actions_on_non_sessions_move_to_the_next_bar():
    raw = pd.DataFrame(
        {
            "date": pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-06"]),
            "symbol": "X",
            "close": [10.0, 10.0, 10.0],
        }
    )
    act = pd.DataFrame(
        {
            "symbol": ["X", "X", "Y"],
            "date": ["2020-01-04", "2020-01-03", "2020-01-03"],
            "action": ["dividend", "split", "dividend"],
            "value": [0.5, 3.0, 9.0],
        }
    )
    out = attach_actions(raw, act)
    assert out["dividend"].tolist() == [0, 0, 0.5] and out["split"].tolist() == [1, 3.0, 1]


@pytest.fixture(scope="module")
def av_raw(shared_data) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = pd.read_parquet(shared_data / "prices_raw_alphavantage.parquet")
    actions = pd.read_parquet(shared_data / "actions.parquet")
    return raw, actions


def _compare(raw: pd.DataFrame, actions: pd.DataFrame, method: str) -> tuple[pd.DataFrame, pd.Series]:
    events = attach_actions(raw.drop(columns=["dividend_amount", "split_coefficient"]), actions)
    adj = adjust(events, method=method, invalid="ignore")  # type: ignore[arg-type]
    rel = (adj["close"] / adj["adjusted_close"] - 1).abs()
    return compare_adjusted(adj["close"], adj["adjusted_close"], adj["symbol"]), rel


def test_adjustment_matches_alphavantage_on_real_data(av_raw):
    raw, actions = av_raw
    symbols = sorted(raw["symbol"].unique())[::10]  # every 10th symbol: 46 of 457, seconds
    raw = raw[raw["symbol"].isin(symbols)]
    per_symbol, rel = _compare(raw, actions[actions["symbol"].isin(symbols)], "ex_close")
    assert rel.median() < TOL_MEDIAN
    assert (per_symbol["worst_rel_diff"] < TOL_SYMBOL_WORST).mean() >= SHARE_WITHIN
    _, rel_crsp = _compare(raw, actions[actions["symbol"].isin(symbols)], "prev_close")
    assert (
        rel_crsp.median() < 1e-3
    )  # the CRSP/Yahoo convention differs from AV's by a dividend yield's square


@pytest.mark.slow
def test_adjustment_matches_alphavantage_on_all_symbols(av_raw):
    raw, actions = av_raw
    per_symbol, rel = _compare(raw, actions, "ex_close")
    assert rel.median() < TOL_MEDIAN
    assert (per_symbol["worst_rel_diff"] < TOL_SYMBOL_WORST).mean() >= SHARE_WITHIN
    assert set(per_symbol.index[per_symbol["worst_rel_diff"] > TOL_SYMBOL_WORST]) <= {"ZBRA", "TRMB", "TMUS"}
