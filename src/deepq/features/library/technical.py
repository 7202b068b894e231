"""Technical indicators, computed by TA-Lib per symbol (float64) and made scale-free for a cross-section.

Price-level outputs are divided by the close (or turned into a gap `close / x - 1`); 0-100 oscillators are
scaled to [0, 1] (or [-1, 1]). `TALIB_FEATURES` lists every feature here that comes from TA-Lib, each with a
parity test in tests/features/test_talib_parity.py. Keltner and Donchian channels are not TA-Lib functions
but are built from TA-Lib's EMA/ATR/MAX/MIN.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepq.data.panel import Panel
from deepq.features import ops
from deepq.features.library._helpers import talib_call, talib_lookback
from deepq.features.registry import feature

FAMILY = "technical"
C = ("close",)
HLC = ("high", "low", "close")
HL = ("high", "low")
HLCV = ("high", "low", "close", "volume")
OHLC = ("open", "high", "low", "close")
TALIB_FEATURES: set[str] = set()


def _reg(name: str, lookback: int, description: str, fn: Callable[[Panel], np.ndarray]) -> None:
    TALIB_FEATURES.add(name)
    feature(name, FAMILY, lookback, description)(fn)


def _out(
    func: str, inputs: tuple[str, ...], k: int = 0, **params: int | float
) -> Callable[[Panel], np.ndarray]:
    return lambda p: talib_call(p, func, inputs, **params)[k]


def _scaled(
    name: str, func: str, inputs: tuple[str, ...], scale: float, desc: str, k: int = 0, **params: int | float
) -> None:
    get = _out(func, inputs, k, **params)
    _reg(name, talib_lookback(func, **params), desc, lambda p: get(p) / scale)


def _per_close(
    name: str, func: str, inputs: tuple[str, ...], desc: str, k: int = 0, **params: int | float
) -> None:
    get = _out(func, inputs, k, **params)
    _reg(name, talib_lookback(func, **params), desc, lambda p: get(p) / p["close"])


def _gap(name: str, func: str, inputs: tuple[str, ...], desc: str, **params: int | float) -> None:
    get = _out(func, inputs, 0, **params)
    _reg(name, talib_lookback(func, **params), desc, lambda p: p["close"] / get(p) - 1.0)


# --- oscillators in [0, 100] -> [0, 1] (or [-100, 100] -> [-1, 1]) ---
for _p in (7, 21):
    _scaled(f"rsi_{_p}", "RSI", C, 100.0, f"TA-Lib RSI({_p}) / 100", timeperiod=_p)
_scaled("cmo_14", "CMO", C, 100.0, "Chande momentum oscillator(14) / 100", timeperiod=14)
_scaled("cci_20", "CCI", HLC, 100.0, "commodity channel index(20) / 100", timeperiod=20)
_scaled("willr_14", "WILLR", HLC, 100.0, "Williams %R(14) / 100, in [-1, 0]", timeperiod=14)
_scaled("mfi_14", "MFI", HLCV, 100.0, "money flow index(14) / 100", timeperiod=14)
_scaled("ultosc", "ULTOSC", HLC, 100.0, "ultimate oscillator(7, 14, 28) / 100")
_scaled("adx_14", "ADX", HLC, 100.0, "average directional index(14) / 100", timeperiod=14)
_scaled("adxr_14", "ADXR", HLC, 100.0, "ADX rating(14) / 100", timeperiod=14)
_scaled("dx_14", "DX", HLC, 100.0, "directional movement index(14) / 100", timeperiod=14)
_scaled("plus_di_14", "PLUS_DI", HLC, 100.0, "+DI(14) / 100", timeperiod=14)
_scaled("minus_di_14", "MINUS_DI", HLC, 100.0, "-DI(14) / 100", timeperiod=14)
_scaled("stoch_k", "STOCH", HLC, 100.0, "slow stochastic %K(14, 3, 3) / 100", 0, fastk_period=14)
_scaled("stoch_d", "STOCH", HLC, 100.0, "slow stochastic %D(14, 3, 3) / 100", 1, fastk_period=14)
_scaled("stochf_k", "STOCHF", HLC, 100.0, "fast stochastic %K(14) / 100", 0, fastk_period=14)
_scaled("stochf_d", "STOCHF", HLC, 100.0, "fast stochastic %D(14, 3) / 100", 1, fastk_period=14)
_scaled("stochrsi_k", "STOCHRSI", C, 100.0, "stochastic RSI %K(14, 5, 3) / 100", 0, timeperiod=14)
_scaled("stochrsi_d", "STOCHRSI", C, 100.0, "stochastic RSI %D(14, 5, 3) / 100", 1, timeperiod=14)
_scaled("aroon_down_25", "AROON", HL, 100.0, "Aroon down(25) / 100", 0, timeperiod=25)
_scaled("aroon_up_25", "AROON", HL, 100.0, "Aroon up(25) / 100", 1, timeperiod=25)
_scaled("aroonosc_25", "AROONOSC", HL, 100.0, "Aroon oscillator(25) / 100", timeperiod=25)
_scaled("bop", "BOP", OHLC, 1.0, "balance of power (close - open) / (high - low)")
_scaled("ppo", "PPO", C, 100.0, "percentage price oscillator(12, 26) / 100", fastperiod=12, slowperiod=26)
_scaled(
    "trix_15",
    "TRIX",
    C,
    100.0,
    "TRIX(15): 1-session rate of change of a triple EMA, as a fraction",
    timeperiod=15,
)
_scaled("natr_14", "NATR", HLC, 100.0, "normalised ATR(14): ATR / close", timeperiod=14)
_scaled("natr_5", "NATR", HLC, 100.0, "normalised ATR(5): ATR / close", timeperiod=5)
_scaled(
    "linreg_angle_20",
    "LINEARREG_ANGLE",
    C,
    90.0,
    "angle of the 20-session regression line / 90 deg",
    timeperiod=20,
)
for _h in (3, 10, 20, 60, 120):
    _scaled(
        f"roc_{_h}",
        "ROCP",
        C,
        1.0,
        f"rate of change over {_h} sessions (close / close[t-{_h}] - 1)",
        timeperiod=_h,
    )

# --- price-level outputs over the close ---
_per_close("macd", "MACD", C, "MACD line(12, 26) / close", 0)
_per_close("macd_signal", "MACD", C, "MACD signal(9) / close", 1)
_per_close("macd_hist", "MACD", C, "MACD histogram / close", 2)
_per_close("apo", "APO", C, "absolute price oscillator(12, 26) / close", fastperiod=12, slowperiod=26)
_per_close("mom_10", "MOM", C, "10-session momentum (close - close[t-10]) / close", timeperiod=10)
_per_close("trange", "TRANGE", HLC, "true range / close")
_per_close("stddev_20", "STDDEV", C, "population std of the close over 20 sessions / close", timeperiod=20)
_per_close(
    "linreg_slope_20", "LINEARREG_SLOPE", C, "slope of the 20-session regression line / close", timeperiod=20
)

# --- moving-average gaps: close / MA - 1 ---
for _p in (12, 26, 50, 200):
    _gap(f"ema_gap_{_p}", "EMA", C, f"close over its {_p}-session EMA, minus 1", timeperiod=_p)
_gap("wma_gap_20", "WMA", C, "close over its 20-session weighted MA, minus 1", timeperiod=20)
_gap("dema_gap_20", "DEMA", C, "close over its 20-session double EMA, minus 1", timeperiod=20)
_gap("tema_gap_20", "TEMA", C, "close over its 20-session triple EMA, minus 1", timeperiod=20)
_gap("trima_gap_20", "TRIMA", C, "close over its 20-session triangular MA, minus 1", timeperiod=20)
_gap("kama_gap_30", "KAMA", C, "close over Kaufman's adaptive MA(30), minus 1", timeperiod=30)
_gap("t3_gap_5", "T3", C, "close over the T3 MA(5), minus 1", timeperiod=5)
_gap("tsf_gap_20", "TSF", C, "close over the 20-session time-series forecast, minus 1", timeperiod=20)
_gap("midpoint_gap_14", "MIDPOINT", C, "close over the 14-session midpoint of closes, minus 1", timeperiod=14)
_gap(
    "midprice_gap_14",
    "MIDPRICE",
    HL,
    "close over the 14-session midpoint of high/low, minus 1",
    timeperiod=14,
)
_gap("sar_gap", "SAR", HL, "close over the parabolic SAR(0.02, 0.2), minus 1", acceleration=0.02, maximum=0.2)


# --- moving-average slopes and crosses ---
def _ma_slope(func: str, period: int, lag: int) -> None:
    def fn(p: Panel) -> np.ndarray:
        ma = talib_call(p, func, C, timeperiod=period)[0]
        return ma / ops.shift(ma, lag) - 1.0

    _reg(
        f"{func.lower()}_slope_{period}",
        talib_lookback(func, timeperiod=period) + lag,
        f"{period}-session {func} over its value {lag} sessions earlier, minus 1",
        fn,
    )


_ma_slope("SMA", 20, 5)
_ma_slope("SMA", 50, 10)
_ma_slope("SMA", 200, 20)
_ma_slope("EMA", 20, 5)


def _sma_cross(p: Panel) -> np.ndarray:
    return talib_call(p, "SMA", C, timeperiod=50)[0] / talib_call(p, "SMA", C, timeperiod=200)[0] - 1.0


_reg(
    "sma_cross_50_200",
    talib_lookback("SMA", timeperiod=200),
    "SMA(50) / SMA(200) - 1 (golden/death cross)",
    _sma_cross,
)


# --- Bollinger, Keltner, Donchian ---
def _bb_pctb(p: Panel) -> np.ndarray:
    up, mid, lo = talib_call(p, "BBANDS", C, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    return (p["close"] - lo) / (up - lo)


def _bb_width(p: Panel) -> np.ndarray:
    up, mid, lo = talib_call(p, "BBANDS", C, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    return (up - lo) / mid


_reg("bb_pctb_20", talib_lookback("BBANDS", timeperiod=20), "Bollinger %B(20, 2)", _bb_pctb)
_reg(
    "bb_width_20",
    talib_lookback("BBANDS", timeperiod=20),
    "Bollinger band width(20, 2) / middle band",
    _bb_width,
)


def _keltner(p: Panel) -> tuple[np.ndarray, np.ndarray]:
    ema = talib_call(p, "EMA", C, timeperiod=20)[0]
    atr = talib_call(p, "ATR", HLC, timeperiod=10)[0]
    return ema, atr


_reg(
    "keltner_pos_20",
    19,
    "(close - EMA(20)) / (2 ATR(10)): position in the Keltner channel, -1..1 inside",
    lambda p: (p["close"] - _keltner(p)[0]) / (2.0 * _keltner(p)[1]),
)
_reg(
    "keltner_width_20",
    19,
    "Keltner channel width 4 ATR(10) / EMA(20)",
    lambda p: 4.0 * _keltner(p)[1] / _keltner(p)[0],
)


def _donchian(n: int) -> tuple[Callable[[Panel], np.ndarray], Callable[[Panel], np.ndarray]]:
    def pos(p: Panel) -> np.ndarray:
        hi, lo = (
            talib_call(p, "MAX", ("high",), timeperiod=n)[0],
            talib_call(p, "MIN", ("low",), timeperiod=n)[0],
        )
        return (p["close"] - lo) / (hi - lo)

    def width(p: Panel) -> np.ndarray:
        hi, lo = (
            talib_call(p, "MAX", ("high",), timeperiod=n)[0],
            talib_call(p, "MIN", ("low",), timeperiod=n)[0],
        )
        return (hi - lo) / p["close"]

    return pos, width


for _n in (20, 55):
    _pos, _width = _donchian(_n)
    _reg(
        f"donchian_pos_{_n}",
        _n - 1,
        f"position of the close in the {_n}-session high/low (Donchian) channel",
        _pos,
    )
    _reg(f"donchian_width_{_n}", _n - 1, f"{_n}-session Donchian channel width / close", _width)


# --- volume flow: changes of cumulative lines over a window, per unit of traded volume ---
def _flow_change(func: str, inputs: tuple[str, ...], window: int) -> Callable[[Panel], np.ndarray]:
    def fn(p: Panel) -> np.ndarray:
        line = talib_call(p, func, inputs)[0]
        vol = talib_call(p, "SUM", ("volume",), timeperiod=window)[0]
        return (line - ops.shift(line, window)) / vol

    return fn


_reg(
    "obv_chg_21",
    21,
    "change of on-balance volume over 21 sessions / volume traded in them",
    _flow_change("OBV", ("close", "volume"), 21),
)
_reg(
    "ad_chg_21",
    21,
    "change of the Chaikin A/D line over 21 sessions / volume traded in them",
    _flow_change("AD", HLCV, 21),
)


def _adosc(p: Panel) -> np.ndarray:
    return (
        talib_call(p, "ADOSC", HLCV, fastperiod=3, slowperiod=10)[0]
        / talib_call(p, "SMA", ("volume",), timeperiod=10)[0]
    )


_reg("adosc", talib_lookback("ADOSC"), "Chaikin A/D oscillator(3, 10) / 10-session mean volume", _adosc)

# --- candlestick patterns: TA-Lib returns -100/0/100 -> -1/0/1 ---
for _cdl, _what in (
    ("CDLDOJI", "doji"),
    ("CDLENGULFING", "engulfing"),
    ("CDLHAMMER", "hammer"),
    ("CDLSHOOTINGSTAR", "shooting star"),
    ("CDLHARAMI", "harami"),
    ("CDL3OUTSIDE", "three outside up/down"),
):
    _scaled(_cdl.lower(), _cdl, OHLC, 100.0, f"TA-Lib candlestick pattern: {_what} (-1, 0, 1)")
