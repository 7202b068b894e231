"""Quality checks and cleaning per symbol; bad input is an error naming the symbol and field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepq.data.cache import ParquetStore
from deepq.data.panel import DataError
from deepq.data.quality import QualityPolicy, check_symbol, clean_symbol, quality_report
from deepq.data.sources.local import LocalSource
from deepq.data.store import to_cache_frame

CAL = np.array(pd.bdate_range("2023-01-02", periods=300).values, dtype="datetime64[D]")


def series(n=200, seed=0, symbol="X"):
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame(
        {
            "date": pd.to_datetime(CAL[:n]),
            "symbol": symbol,
            "open": close * 0.999,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "volume": rng.integers(1_000, 2_000, n),
            "dividend": 0.0,
            "split": 1.0,
        }
    )


def test_checks_count_each_defect():
    f = series()
    f.loc[10, "high"] = f.loc[10, "close"] * 0.9  # a real OHLC violation
    f.loc[11, "high"] = f.loc[11, "close"] * (1 - 1e-9)  # float noise
    f.loc[50:56, "close"] = f.loc[49, "close"]  # stale: 8 equal closes
    f.loc[80:83, "volume"] = 0  # zero-volume streak of 4
    f.loc[120:, "close"] *= 1.6  # a jump no action explains
    f.loc[150:, "close"] *= 0.5
    f.loc[150, "split"] = 2.0  # ... and one a split explains
    jump = str(f.loc[120, "date"].date())
    f = f.drop(index=[30, 31])  # two missing sessions
    r = check_symbol(f, CAL, QualityPolicy())
    assert r["ohlc_violations"] >= 1 and r["ohlc_noise"] == 1
    assert r["stale_runs"] == 1 and r["max_stale"] == 8
    assert r["max_zero_volume_streak"] == 4 and r["zero_volume_rows"] == 4
    assert r["outlier_dates"] == [jump]  # the split day is explained
    assert r["missing_sessions"] == 2 and r["span_sessions"] == 200
    assert r["median_dollar_volume"] > 0 and r["liquid"]


def test_clean_clamps_ohlc_and_cuts_a_thin_leading_history():
    f = series(n=250)
    f.loc[:99, "volume"] = np.where(np.arange(100) % 4 == 0, 10, 0)  # 75 % zero-volume days: pre-listing
    f.loc[150, "low"] = f.loc[150, "close"] * 1.02
    out, log = clean_symbol(f, QualityPolicy())
    assert log["thin_until"] == str(f.loc[99, "date"].date()) and out["date"].iloc[0] == f.loc[100, "date"]
    assert log["ohlc_clamped"] == 1
    assert check_symbol(out, CAL, QualityPolicy())["ohlc_violations"] == 0
    stub, log = clean_symbol(
        series(n=110).assign(volume=lambda d: np.where(d.index < 100, 0, 5)), QualityPolicy()
    )
    assert stub.empty  # only 10 rows after the thin part: nothing tradable yet


def test_report_summary_counts_missing_share():
    a, b = series(symbol="A"), series(symbol="B").drop(index=[5])
    table, summary = quality_report([a, b], CAL, QualityPolicy())
    assert summary["symbols"] == 2 and summary["missing_after_fill"] == 1
    assert summary["missing_pct"] == pytest.approx(100 / 400)
    assert set(table["symbol"]) == {"A", "B"}


@pytest.mark.parametrize(
    "change,match",
    [
        (
            lambda d: d.assign(close=np.where(d.index == 3, -1.0, d["close"])),
            r"non-positive close -1.0 for symbol X on 2023-01-05",
        ),
        (lambda d: pd.concat([d, d.iloc[[4]]]), r"duplicate date 2023-01-06 00:00:00 for symbol X"),
        (
            lambda d: d.assign(volume=d["volume"].astype(str).where(d.index != 2, "n/a")),
            r"field 'volume' has dtype object.*symbol X, date 2023-01-04.*'n/a'",
        ),
        (
            lambda d: d.assign(date=d["date"].astype(str).where(d.index != 1, "2023-13-45")),
            r"field 'date' is not a date for symbol X",
        ),
        (lambda d: d.drop(columns="low"), r"missing column\(s\) \['low'\]"),
    ],
)
def test_bad_input_names_symbol_and_field(change, match, tmp_path):
    bad = change(series(n=10))
    with pytest.raises(DataError, match=match):
        to_cache_frame(bad, symbol="X")
    with pytest.raises(DataError, match=match):
        ParquetStore(tmp_path / "c").write("X", bad)


def test_unknown_symbol_in_a_local_file(tmp_path):
    path = tmp_path / "p.parquet"
    series(symbol="A").to_parquet(path)
    src = LocalSource(path)
    with pytest.raises(DataError, match=r"unknown symbol\(s\) \['NOPE'\]"):
        list(src.iter_frames(["A", "NOPE"]))
    assert src.symbols() == ["A"] and len(src.fetch("A")) == 200


def test_local_folder_of_per_symbol_csvs(tmp_path):
    for s in ("A", "B"):
        series(symbol=s).drop(columns="symbol").to_csv(tmp_path / f"{s}.csv", index=False)
    src = LocalSource(tmp_path)
    frames = dict(src.iter_frames())
    assert sorted(frames) == ["A", "B"] and (frames["B"]["symbol"] == "B").all()
    assert (frames["A"]["source"] == "local:file").all()
