"""Point-in-time membership, the liquidity filter, and named symbol lists."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepq.data.panel import DataError, to_panel
from deepq.data.universe import (
    ever_members,
    liquidity_mask,
    load_constituents,
    load_symbol_list,
    members_on,
    membership_mask,
)
from deepq.tasks.common import build_panel_data

from ..conftest import ROOT, SAMPLE, compose_cfg

UNIVERSES = ROOT / "data" / "universes"


def _panel(symbols=("AAA", "META", "ZZZ"), n=6):
    dates = pd.bdate_range("2022-06-06", periods=n)
    rows = [
        {
            "date": d,
            "symbol": s,
            "open": 10.0,
            "high": 11.0,
            "low": 9.0,
            "close": 10.0,
            "volume": 1000 * (i + 1),
        }
        for s in symbols
        for i, d in enumerate(dates)
    ]
    return to_panel(pd.DataFrame(rows))


def _cons(rows):
    return pd.DataFrame(
        {
            "symbol": [r[0] for r in rows],
            "start_date": pd.to_datetime([r[1] for r in rows]),
            "end_date": pd.to_datetime([r[2] for r in rows]),
        }
    )


def test_interval_is_start_inclusive_end_exclusive_and_renames_are_followed():
    p = _panel()  # sessions 2022-06-06 .. 2022-06-13
    cons = _cons(
        [
            ("AAA", "2022-06-07", "2022-06-09"),
            ("FB", "2013-12-23", "2022-06-09"),
            ("META", "2022-06-09", None),
        ]
    )
    m = membership_mask(p, cons)
    assert m[:, 0].tolist() == [False, True, True, False, False, False]
    assert m[:, 1].all()  # FB's interval counts for META (the price history lives under the new ticker)
    assert not m[:, 2].any()  # never a member
    assert members_on(cons, "2022-06-08") == ["AAA", "FB"]
    assert members_on(cons, "2022-06-09") == ["META"]
    assert ever_members(cons, start="2022-06-10") == ["META"]


def test_rename_not_applied_when_old_ticker_has_its_own_history():
    p = _panel(symbols=("FB", "META"))
    cons = _cons([("FB", "2013-12-23", "2022-06-09"), ("META", "2022-06-09", None)])
    m = membership_mask(p, cons)
    assert m[:, 0].tolist() == [True, True, True, False, False, False]
    assert m[:, 1].tolist() == [False, False, False, True, True, True]


def test_liquidity_mask_is_causal():
    p = _panel(n=30)
    m = liquidity_mask(p, min_dollar_volume=10.0 * 1000 * 15, window_days=10, min_periods=5)
    # volume rises 1000/day: the trailing median passes the bar only once enough high days are in the window
    first = int(np.argmax(m[:, 0]))
    dv = 10.0 * 1000 * np.arange(1, 31)
    assert np.median(dv[first - 9 : first + 1]) >= 150_000 > np.median(dv[first - 10 : first])
    assert not m[:4].any()  # fewer than min_periods rows: not tradable


def test_sample_config_evaluates_on_the_point_in_time_universe(tmp_path):
    cfg = compose_cfg(tmp_path, ["debug=fdr"])
    assert cfg.universe.constituents.endswith("data/sample/constituents.parquet")
    data = build_panel_data(cfg)
    j = data.panel.symbol_index("NFLX")  # joined the S&P 500 on 2010-12-20
    t = data.panel.date_index("2010-12-17")
    assert not data.tradable[: t + 1, j].any() and data.tradable[t + 1, j]
    assert not data.tradable[:, data.panel.symbol_index("SPY")].any()
    off = build_panel_data(compose_cfg(tmp_path, ["debug=fdr", "universe.constituents=null"]))
    assert off.tradable[:t, j].any()


def test_constituents_errors_name_the_field(tmp_path):
    bad = tmp_path / "c.csv"
    pd.DataFrame({"symbol": ["X"], "start_date": ["2020-01-02"], "end_date": ["2019-01-01"]}).to_csv(
        bad, index=False
    )
    with pytest.raises(DataError, match="symbol X ends"):
        load_constituents(bad)
    pd.DataFrame({"symbol": ["X"], "start": ["2020-01-02"]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['start_date', 'end_date'\]"):
        load_constituents(bad)
    assert len(load_constituents(SAMPLE / "constituents.parquet")) >= 33


def test_full_constituents_on_the_cutoff(shared_data):
    members = members_on(shared_data / "constituents.parquet", "2024-06-28")
    assert 440 <= len(members) <= 460  # ~452 after the holdout (PROVENANCE.md)


@pytest.mark.parametrize("name", ["nasdaq100", "sector_etfs", "commodity_etfs", "adrs", "russell2000_sample"])
def test_named_lists_are_versioned_with_an_as_of_date(name):
    lst = load_symbol_list(name, UNIVERSES)
    assert lst.symbols and pd.Timestamp(lst.as_of) <= pd.Timestamp("2024-06-28")
    assert lst.path.stem == lst.as_of
    with pytest.raises(KeyError, match="no version dated on or before"):
        load_symbol_list(name, UNIVERSES, as_of="1990-01-01")


def test_unknown_list_names_the_known_ones():
    with pytest.raises(KeyError, match="unknown symbol list 'nope'.*nasdaq100"):
        load_symbol_list("nope", UNIVERSES)
