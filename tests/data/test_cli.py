"""`deepq data` end to end on the shipped sample: import, quality, sql, manifest; the spine reads the cache."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from deepq.data.panel import load_panel
from deepq.tasks.common import build_panel_data
from deepq.tasks.data import run

from ..conftest import SAMPLE, compose_cfg


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPQ_CACHE", str(root))
        assert run(["import", str(SAMPLE / "prices.parquet")]) == 0
        yield root


def test_import_fills_cache_and_meta(cache):
    assert len(list((cache / "prices").glob("*.parquet"))) == 49
    for name in ("sectors.parquet", "constituents.parquet", "sessions_XNYS.parquet"):
        assert (cache / "meta" / name).exists()
    assert run(["manifest"]) == 0


def test_quality_writes_json_with_the_missing_share(cache, tmp_path, capsys):
    out = tmp_path / "q.json"
    assert run(["quality", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    s = report["summary"]
    assert s["symbols"] == 49 and s["missing_pct"] < 0.1
    assert s["filled_sessions"] >= 13  # Stooq lacks 2011-02-17 for every ETF but QQQ: filled and marked
    assert {r["symbol"] for r in report["symbols"]} >= {"AAPL", "SPY", "^GSPC"}
    assert "missing data after cleaning" in capsys.readouterr().out


def test_sql_prints_query_results(cache, capsys):
    assert (
        run(["sql", "select symbol, count(*) as n from prices where symbol = 'AAPL' group by 1", "--json"])
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["symbol"] == "AAPL" and rows[0]["n"] > 4800


def test_spine_reads_the_cache(cache, tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPQ_CACHE", str(cache))
        cfg = compose_cfg(tmp_path, ["data=cache", "data.start=2005-01-01", "debug=fdr"])
        assert cfg.universe.constituents == str(cache / "meta" / "constituents.parquet")
        data = build_panel_data(cfg)
    ref = load_panel(
        SAMPLE / "prices.parquet",
        SAMPLE / "sectors.parquet",
        SAMPLE / "nyse_sessions.parquet",
        start="2005-01-01",
    )
    assert data.panel.symbols == ref.symbols and len(data.panel.dates) == len(ref.dates)
    # the cache holds the same prices; the only differences are filled ETF sessions
    same = np.isclose(data.panel["close"], ref["close"], rtol=0, atol=0) | np.isnan(ref["close"])
    assert same.all()
    assert data.tradable.any() and not data.tradable[:, data.panel.symbol_index("SPY")].any()


def test_download_and_update_through_the_configured_chain(tmp_path, monkeypatch):
    from deepq.data.cache import ParquetStore

    from .replay import yahoo_replay
    from .test_sources import END, START

    for var in ("ALPHAVANTAGE_API_KEY", "POLYGON_API_KEY", "TIINGO_API_KEY"):
        monkeypatch.delenv(var, raising=False)  # keyless HTTP vendors are left out of the chain
    monkeypatch.setenv("DEEPQ_CACHE", str(tmp_path))
    fast = ["sources.retry.base_delay_s=0", "sources.retry.max_attempts=2"]
    with yahoo_replay() as server:
        assert run(["download", "--symbols", "AAPL,KO", "--start", START, "--end", "2020-09-30", *fast]) == 0
        server.calls.clear()
        assert run(["update", "--end", END, *fast]) == 0
    store = ParquetStore(tmp_path)
    man = store.manifest().set_index("symbol")
    assert set(man.index) == {"AAPL", "KO"} and (man["source"] == "yahoo").all()
    assert (man["last_date"] == pd.Timestamp(END)).all() and (man["rows"] == 108).all()
    assert len(server.calls) == 2  # one overlap window per symbol, not the full history


def test_sp500_universe_is_every_member_since_start_plus_context():
    import argparse

    from deepq.tasks.data import load_config, resolve_symbols

    cfg = load_config([f"sources.constituents={SAMPLE / 'constituents.parquet'}"])
    args = argparse.Namespace(symbols=None, universe="sp500", start="2005-01-01", end=None, as_of=None)
    symbols = resolve_symbols(args, cfg)
    assert {"AAPL", "NFLX", "SPY", "^GSPC", "XLK"} <= set(symbols) and len(symbols) == len(set(symbols))
    args.universe = "sector_etfs"
    assert resolve_symbols(args, cfg) == [
        "XLB",
        "XLC",
        "XLE",
        "XLF",
        "XLI",
        "XLK",
        "XLP",
        "XLRE",
        "XLU",
        "XLV",
        "XLY",
    ]


def test_manifest_repair_after_a_killed_write(tmp_path, monkeypatch):
    from deepq.data.cache import ParquetStore
    from deepq.data.panel import load_prices

    monkeypatch.setenv("DEEPQ_CACHE", str(tmp_path / "c"))
    store = ParquetStore(tmp_path / "c")
    rows = load_prices(SAMPLE / "prices.parquet", symbols=["AAPL", "JPM"], start="2019-01-01")
    store.write_many(list(rows.groupby("symbol")))
    aapl = store.read_symbol("AAPL")
    store._write_file("AAPL", aapl.assign(close=aapl["close"] * 2))  # killed before the manifest update
    (store.prices_dir / ".JPM.parquet.x1.tmp").write_bytes(b"PAR1")  # killed mid-write
    assert run(["manifest"]) == 1
    assert run(["manifest", "--repair"]) == 0
    assert store.verify() == [] and not list(store.prices_dir.glob("*.tmp"))
