# ruff: noqa: B023  (each lambda binds its loop value through an enclosing `lambda n:` call)
"""TA-Lib parity: every technical feature built on a TA-Lib function equals TA-Lib called directly on one
symbol's float64 series (with the documented scaling), and core's own Wilder RSI converges to TA-Lib's."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from deepq.features.library.technical import TALIB_FEATURES
from deepq.features.registry import compute_features, registry


def _sma(x, n):
    return talib.SMA(x, n)


# name -> expected value from (open, high, low, close, volume), written independently of the feature code
EXPECTED = {
    "rsi_7": lambda o, h, lo, c, v: talib.RSI(c, 7) / 100,
    "rsi_21": lambda o, h, lo, c, v: talib.RSI(c, 21) / 100,
    "cmo_14": lambda o, h, lo, c, v: talib.CMO(c, 14) / 100,
    "cci_20": lambda o, h, lo, c, v: talib.CCI(h, lo, c, 20) / 100,
    "willr_14": lambda o, h, lo, c, v: talib.WILLR(h, lo, c, 14) / 100,
    "mfi_14": lambda o, h, lo, c, v: talib.MFI(h, lo, c, v, 14) / 100,
    "ultosc": lambda o, h, lo, c, v: talib.ULTOSC(h, lo, c) / 100,
    "adx_14": lambda o, h, lo, c, v: talib.ADX(h, lo, c, 14) / 100,
    "adxr_14": lambda o, h, lo, c, v: talib.ADXR(h, lo, c, 14) / 100,
    "dx_14": lambda o, h, lo, c, v: talib.DX(h, lo, c, 14) / 100,
    "plus_di_14": lambda o, h, lo, c, v: talib.PLUS_DI(h, lo, c, 14) / 100,
    "minus_di_14": lambda o, h, lo, c, v: talib.MINUS_DI(h, lo, c, 14) / 100,
    "stoch_k": lambda o, h, lo, c, v: talib.STOCH(h, lo, c, fastk_period=14)[0] / 100,
    "stoch_d": lambda o, h, lo, c, v: talib.STOCH(h, lo, c, fastk_period=14)[1] / 100,
    "stochf_k": lambda o, h, lo, c, v: talib.STOCHF(h, lo, c, fastk_period=14)[0] / 100,
    "stochf_d": lambda o, h, lo, c, v: talib.STOCHF(h, lo, c, fastk_period=14)[1] / 100,
    "stochrsi_k": lambda o, h, lo, c, v: talib.STOCHRSI(c, 14)[0] / 100,
    "stochrsi_d": lambda o, h, lo, c, v: talib.STOCHRSI(c, 14)[1] / 100,
    "aroon_down_25": lambda o, h, lo, c, v: talib.AROON(h, lo, 25)[0] / 100,
    "aroon_up_25": lambda o, h, lo, c, v: talib.AROON(h, lo, 25)[1] / 100,
    "aroonosc_25": lambda o, h, lo, c, v: talib.AROONOSC(h, lo, 25) / 100,
    "bop": lambda o, h, lo, c, v: talib.BOP(o, h, lo, c),
    "ppo": lambda o, h, lo, c, v: talib.PPO(c, 12, 26) / 100,
    "trix_15": lambda o, h, lo, c, v: talib.TRIX(c, 15) / 100,
    "natr_14": lambda o, h, lo, c, v: talib.NATR(h, lo, c, 14) / 100,
    "natr_5": lambda o, h, lo, c, v: talib.NATR(h, lo, c, 5) / 100,
    "linreg_angle_20": lambda o, h, lo, c, v: talib.LINEARREG_ANGLE(c, 20) / 90,
    **{f"roc_{n}": (lambda n: lambda o, h, lo, c, v: talib.ROCP(c, n))(n) for n in (3, 10, 20, 60, 120)},
    "macd": lambda o, h, lo, c, v: talib.MACD(c)[0] / c,
    "macd_signal": lambda o, h, lo, c, v: talib.MACD(c)[1] / c,
    "macd_hist": lambda o, h, lo, c, v: talib.MACD(c)[2] / c,
    "apo": lambda o, h, lo, c, v: talib.APO(c, 12, 26) / c,
    "mom_10": lambda o, h, lo, c, v: talib.MOM(c, 10) / c,
    "trange": lambda o, h, lo, c, v: talib.TRANGE(h, lo, c) / c,
    "stddev_20": lambda o, h, lo, c, v: talib.STDDEV(c, 20) / c,
    "linreg_slope_20": lambda o, h, lo, c, v: talib.LINEARREG_SLOPE(c, 20) / c,
    **{
        f"ema_gap_{n}": (lambda n: lambda o, h, lo, c, v: c / talib.EMA(c, n) - 1)(n)
        for n in (12, 26, 50, 200)
    },
    "wma_gap_20": lambda o, h, lo, c, v: c / talib.WMA(c, 20) - 1,
    "dema_gap_20": lambda o, h, lo, c, v: c / talib.DEMA(c, 20) - 1,
    "tema_gap_20": lambda o, h, lo, c, v: c / talib.TEMA(c, 20) - 1,
    "trima_gap_20": lambda o, h, lo, c, v: c / talib.TRIMA(c, 20) - 1,
    "kama_gap_30": lambda o, h, lo, c, v: c / talib.KAMA(c, 30) - 1,
    "t3_gap_5": lambda o, h, lo, c, v: c / talib.T3(c, 5) - 1,
    "tsf_gap_20": lambda o, h, lo, c, v: c / talib.TSF(c, 20) - 1,
    "midpoint_gap_14": lambda o, h, lo, c, v: c / talib.MIDPOINT(c, 14) - 1,
    "midprice_gap_14": lambda o, h, lo, c, v: c / talib.MIDPRICE(h, lo, 14) - 1,
    "sar_gap": lambda o, h, lo, c, v: c / talib.SAR(h, lo, 0.02, 0.2) - 1,
    "sma_slope_20": lambda o, h, lo, c, v: _sma(c, 20) / np.roll(_sma(c, 20), 5) - 1,
    "sma_slope_50": lambda o, h, lo, c, v: _sma(c, 50) / np.roll(_sma(c, 50), 10) - 1,
    "sma_slope_200": lambda o, h, lo, c, v: _sma(c, 200) / np.roll(_sma(c, 200), 20) - 1,
    "ema_slope_20": lambda o, h, lo, c, v: talib.EMA(c, 20) / np.roll(talib.EMA(c, 20), 5) - 1,
    "sma_cross_50_200": lambda o, h, lo, c, v: _sma(c, 50) / _sma(c, 200) - 1,
    "bb_pctb_20": lambda o, h, lo, c, v: (lambda u, m, d: (c - d) / (u - d))(*talib.BBANDS(c, 20, 2, 2)),
    "bb_width_20": lambda o, h, lo, c, v: (lambda u, m, d: (u - d) / m)(*talib.BBANDS(c, 20, 2, 2)),
    "keltner_pos_20": lambda o, h, lo, c, v: (c - talib.EMA(c, 20)) / (2 * talib.ATR(h, lo, c, 10)),
    "keltner_width_20": lambda o, h, lo, c, v: 4 * talib.ATR(h, lo, c, 10) / talib.EMA(c, 20),
    **{
        f"donchian_pos_{n}": (
            lambda n: lambda o, h, lo, c, v: (c - talib.MIN(lo, n)) / (talib.MAX(h, n) - talib.MIN(lo, n))
        )(n)
        for n in (20, 55)
    },
    **{
        f"donchian_width_{n}": (lambda n: lambda o, h, lo, c, v: (talib.MAX(h, n) - talib.MIN(lo, n)) / c)(n)
        for n in (20, 55)
    },
    "obv_chg_21": lambda o, h, lo, c, v: (talib.OBV(c, v) - np.roll(talib.OBV(c, v), 21)) / talib.SUM(v, 21),
    "ad_chg_21": lambda o, h, lo, c, v: (
        (talib.AD(h, lo, c, v) - np.roll(talib.AD(h, lo, c, v), 21)) / talib.SUM(v, 21)
    ),
    "adosc": lambda o, h, lo, c, v: talib.ADOSC(h, lo, c, v, 3, 10) / talib.SMA(v, 10),
    **{
        name.lower(): (lambda f: lambda o, h, lo, c, v: getattr(talib, f)(o, h, lo, c) / 100)(name)
        for name in ("CDLDOJI", "CDLENGULFING", "CDLHAMMER", "CDLSHOOTINGSTAR", "CDLHARAMI", "CDL3OUTSIDE")
    },
}


def test_every_talib_feature_has_a_parity_check():
    assert set(EXPECTED) == TALIB_FEATURES


@pytest.fixture(scope="module")
def series(sample_panel):
    j = sample_panel.symbol_index("AMT")  # AMT: a full history, plus OHLC rows that are not float-exact
    rows = np.flatnonzero(np.isfinite(sample_panel["close"][:, j]))
    cols = [
        np.ascontiguousarray(sample_panel[f][rows, j], dtype=np.float64)
        for f in ("open", "high", "low", "close", "volume")
    ]
    return sample_panel, j, rows, cols


@pytest.mark.parametrize("name", sorted(TALIB_FEATURES))
def test_feature_matches_talib(series, name):
    panel, j, rows, cols = series
    spec = registry()[name]
    ours = compute_features(panel, [spec])[rows, j, 0].astype(np.float64)
    expected = np.asarray(EXPECTED[name](*cols), dtype=np.float64)
    start = spec.lookback + 1  # np.roll wraps around: compare where every input is defined
    ok = np.isfinite(expected[start:])
    assert ok.mean() > 0.95, f"{name}: TA-Lib gave too few values to compare"
    np.testing.assert_allclose(ours[start:][ok], expected[start:][ok], rtol=2e-6, atol=1e-6, err_msg=name)
    # and ours is undefined exactly where TA-Lib's warm-up is (NaN, not a made-up number)
    assert np.isnan(ours[: spec.lookback]).all() or name.startswith("cdl") or name in ("bop", "trange"), name


def test_core_rsi_converges_to_talib(sample_panel):
    """core's rsi_14 (Wilder recursion seeded differently) matches TA-Lib's RSI once the seed has decayed."""
    j = sample_panel.symbol_index("AAPL")
    c = np.ascontiguousarray(sample_panel["close"][:, j], dtype=np.float64)
    ours = compute_features(sample_panel, [registry()["rsi_14"]])[:, j, 0]
    expected = talib.RSI(c, 14) / 100
    np.testing.assert_allclose(ours[300:], expected[300:], atol=1e-5)
