"""Loading prices into a panel; bad input is named precisely."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepq.data.panel import DataError, load_prices, to_panel, validate_prices

from .conftest import SAMPLE


def _frame(**overrides) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "date": pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-02", "2020-01-03"]),
            "symbol": ["AAA", "AAA", "BBB", "BBB"],
            "open": [1.0, 1.1, 2.0, 2.1],
            "high": [1.2, 1.2, 2.2, 2.2],
            "low": [0.9, 1.0, 1.9, 2.0],
            "close": [1.1, 1.15, 2.1, 2.05],
            "volume": [100, 120, 200, 210],
        }
    )
    for k, v in overrides.items():
        df[k] = v
    return df


def test_sample_loads_into_aligned_panel(sample_panel):
    T, N = sample_panel.shape
    assert N == 11 and T > 1000
    assert np.all(np.diff(sample_panel.dates.astype("int64")) > 0)
    assert set(sample_panel.fields) == {"open", "high", "low", "close", "volume"}
    assert sample_panel.asset_types["SPY"] == "etf" and sample_panel.asset_types["AAPL"] == "stock"
    assert sample_panel.sectors["XOM"] == "Energy"
    assert np.isfinite(sample_panel["close"]).mean() > 0.99


def test_panel_puts_values_at_the_right_cell():
    p = to_panel(_frame())
    assert p.symbols == ("AAA", "BBB")
    assert p["close"][1, 1] == 2.05 and p["volume"][0, 0] == 100


def test_panel_on_a_calendar_leaves_missing_sessions_nan():
    df = _frame().iloc[[0, 2, 3]]  # AAA misses 2020-01-03
    p = to_panel(df, sessions=pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-06"]))
    assert len(p.dates) == 2 and np.isnan(p["close"][1, 0])


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"close": [1.1, -1.0, 2.1, 2.05]}, r"non-positive close -1.0 for symbol AAA on 2020-01-03"),
        (
            {"date": pd.to_datetime(["2020-01-02", "2020-01-02", "2020-01-02", "2020-01-03"])},
            r"duplicate date 2020-01-02.* symbol AAA",
        ),
        ({"volume": ["1", "x", "2", "3"]}, r"field 'volume' has dtype object.*symbol AAA"),
        ({"volume": [1, -5, 2, 3]}, r"negative volume for symbol AAA on 2020-01-03"),
    ],
)
def test_bad_input_names_symbol_and_field(overrides, match):
    with pytest.raises(DataError, match=match):
        validate_prices(_frame(**overrides))


def test_missing_column_and_unknown_symbol(tmp_path):
    with pytest.raises(DataError, match=r"missing column\(s\) \['volume'\]"):
        validate_prices(_frame().drop(columns="volume"))
    with pytest.raises(DataError, match=r"unknown symbol\(s\) \['NOPE'\]"):
        load_prices(SAMPLE / "prices.parquet", symbols=["AAPL", "NOPE"])
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        load_prices(tmp_path / "nope.parquet")
