"""The core families: returns, momentum, volatility, oscillators, trend, volume, range and market context."""

from __future__ import annotations

import numpy as np

from deepq.data.panel import Panel
from deepq.features import ops
from deepq.features.library._helpers import close_log_return, market_close
from deepq.features.registry import feature


def _register_returns(h: int) -> None:
    @feature(f"ret_{h}", "returns", h, f"log return over the last {h} sessions")
    def _ret(panel: Panel) -> np.ndarray:
        return close_log_return(panel, h)


for _h in (1, 2, 5, 10, 21, 63, 126, 252):
    _register_returns(_h)


@feature(
    "mom_12_1", "returns", 252, "12-month momentum skipping the last month: log(close[t-21] / close[t-252])"
)
def mom_12_1(panel: Panel) -> np.ndarray:
    c = panel["close"]
    return np.log(ops.shift(c, 21) / ops.shift(c, 252))


def _register_vol(w: int) -> None:
    @feature(
        f"vol_{w}", "volatility", w + 1, f"realised volatility: std of daily log returns over {w} sessions"
    )
    def _vol(panel: Panel) -> np.ndarray:
        return ops.rolling_std(close_log_return(panel, 1), w)


for _w in (5, 21, 63):
    _register_vol(_w)


@feature("vol_ratio_5_63", "volatility", 64, "short over long realised volatility")
def vol_ratio(panel: Panel) -> np.ndarray:
    r = close_log_return(panel, 1)
    return ops.rolling_std(r, 5) / ops.rolling_std(r, 63)


@feature("hl_range", "volatility", 1, "intraday range log(high / low)")
def hl_range(panel: Panel) -> np.ndarray:
    return np.log(panel["high"] / panel["low"])


@feature("hl_range_21", "volatility", 21, "mean intraday range over 21 sessions")
def hl_range_21(panel: Panel) -> np.ndarray:
    return ops.rolling_mean(np.log(panel["high"] / panel["low"]), 21)


@feature("rsi_14", "oscillator", 15, "Wilder RSI(14), scaled to [0, 1]")
def rsi_14(panel: Panel) -> np.ndarray:
    d = panel["close"] - ops.shift(panel["close"], 1)
    up = ops.wilder_mean(np.where(np.isnan(d), np.nan, np.maximum(d, 0.0)), 14)
    down = ops.wilder_mean(np.where(np.isnan(d), np.nan, np.maximum(-d, 0.0)), 14)
    return up / (up + down)


@feature(
    "close_loc", "oscillator", 1, "where the close sits in the day's range: (close - low) / (high - low)"
)
def close_loc(panel: Panel) -> np.ndarray:
    rng = panel["high"] - panel["low"]
    return np.where(rng > 0, (panel["close"] - panel["low"]) / np.where(rng > 0, rng, 1.0), 0.5)


def _register_ma_gap(w: int) -> None:
    @feature(f"ma_gap_{w}", "trend", w, f"close over its {w}-session simple moving average, minus 1")
    def _gap(panel: Panel) -> np.ndarray:
        return panel["close"] / ops.rolling_mean(panel["close"], w) - 1.0


for _w in (5, 20, 50, 200):
    _register_ma_gap(_w)


@feature("dist_high_252", "trend", 252, "drawdown from the 252-session high close")
def dist_high_252(panel: Panel) -> np.ndarray:
    return panel["close"] / ops.rolling_max(panel["close"], 252) - 1.0


@feature("overnight_gap", "price", 2, "log(open / previous close)")
def overnight_gap(panel: Panel) -> np.ndarray:
    return np.log(panel["open"] / ops.shift(panel["close"], 1))


@feature("volume_z_21", "volume", 21, "z-score of log volume against its 21-session mean and std")
def volume_z_21(panel: Panel) -> np.ndarray:
    return ops.rolling_zscore(np.log1p(panel["volume"]), 21)


@feature("dollar_volume_21", "volume", 21, "log of the 21-session median dollar volume")
def dollar_volume_21(panel: Panel) -> np.ndarray:
    return np.log1p(ops.rolling_median(panel["close"] * panel["volume"], 21))


@feature("mkt_ret_1", "market", 2, "market (SPY) log return over the last session", reads=("market",))
def mkt_ret_1(panel: Panel) -> np.ndarray:
    return ops.broadcast_column(panel.shape, ops.log_return(market_close(panel)[:, None])[:, 0])


@feature("mkt_ret_21", "market", 22, "market (SPY) log return over 21 sessions", reads=("market",))
def mkt_ret_21(panel: Panel) -> np.ndarray:
    return ops.broadcast_column(panel.shape, ops.log_return(market_close(panel)[:, None], 21)[:, 0])


@feature("mkt_vol_21", "market", 22, "market (SPY) realised volatility over 21 sessions", reads=("market",))
def mkt_vol_21(panel: Panel) -> np.ndarray:
    r = ops.log_return(market_close(panel)[:, None])
    return ops.broadcast_column(panel.shape, ops.rolling_std(r, 21)[:, 0])


@feature(
    "rel_strength_21", "market", 22, "21-session log return in excess of the market's", reads=("market",)
)
def rel_strength_21(panel: Panel) -> np.ndarray:
    return close_log_return(panel, 21) - mkt_ret_21(panel)


@feature("beta_63", "market", 64, "rolling 63-session beta of daily returns to the market", reads=("market",))
def beta_63(panel: Panel) -> np.ndarray:
    r = close_log_return(panel, 1)
    m = ops.broadcast_column(panel.shape, ops.log_return(market_close(panel)[:, None])[:, 0])
    m = np.where(np.isnan(r), np.nan, m)
    cov = ops.rolling_mean(r * m, 63) - ops.rolling_mean(r, 63) * ops.rolling_mean(m, 63)
    var = ops.rolling_mean(m * m, 63) - ops.rolling_mean(m, 63) ** 2
    return cov / var


@feature("cs_rank_ret_21", "cross_section", 22, "per-date percentile rank of the 21-session return")
def cs_rank_ret_21(panel: Panel) -> np.ndarray:
    return ops.cross_sectional_rank(np.where(panel.mask(("stock",)), close_log_return(panel, 21), np.nan))


@feature("cs_rank_vol_21", "cross_section", 22, "per-date percentile rank of 21-session realised volatility")
def cs_rank_vol_21(panel: Panel) -> np.ndarray:
    vol = ops.rolling_std(close_log_return(panel, 1), 21)
    return ops.cross_sectional_rank(np.where(panel.mask(("stock",)), vol, np.nan))
