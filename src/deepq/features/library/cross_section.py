"""Cross-sectional features: per-date rank and z-score within the stock universe and within each GICS sector,
relative strength against SPY and the sector ETF, rolling beta, residual momentum and idiosyncratic volatility.

The universe on a date is the stocks of the panel with a value that date (ETFs and indices are excluded).
Within-sector statistics use `panel.sectors`; a symbol with no sector forms its own group. A sector with a
single member on a date has rank 1 and z-score 0 (documented degenerate case). The sector ETF benchmark
falls back to the market per cell, see `_helpers.benchmark_log_return`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepq.data.panel import Panel
from deepq.features import ops
from deepq.features.library._helpers import (
    benchmark_log_return,
    bind,
    close_log_return,
    market_close,
    memo,
    stock_only,
)
from deepq.features.library.microstructure import amihud
from deepq.features.registry import feature

FAMILY = "cross_section"


def cs_zscore(a: np.ndarray) -> np.ndarray:
    """Per-date z-score across columns (NaNs ignored); 0 where the cross-section has no spread."""
    ok = np.isfinite(a)
    n = ok.sum(axis=1, keepdims=True)
    x = np.where(ok, a, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x.sum(axis=1, keepdims=True) / n
        std = np.sqrt(np.where(ok, (x - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / n)
        z = np.where(std > 0, (a - mean) / np.where(std > 0, std, 1.0), 0.0)
    return np.where(np.isfinite(a), z, np.nan)


def _groups(panel: Panel) -> list[np.ndarray]:
    """Column indices per sector (stocks only)."""
    stocks = panel.mask(("stock",))
    by: dict[str, list[int]] = {}
    for j, sym in enumerate(panel.symbols):
        if stocks[j]:
            by.setdefault(panel.sectors.get(sym, f"_none_{sym}"), []).append(j)
    return [np.array(ix) for ix in by.values()]


def within_sector(panel: Panel, a: np.ndarray, op: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    out = np.full(a.shape, np.nan)
    for ix in _groups(panel):
        out[:, ix] = op(a[:, ix])
    return out


BASES: dict[str, tuple[int, str, Callable[[Panel], np.ndarray]]] = {
    "ret_5": (6, "5-session log return", lambda p: close_log_return(p, 5)),
    "ret_21": (22, "21-session log return", lambda p: close_log_return(p, 21)),
    "ret_63": (64, "63-session log return", lambda p: close_log_return(p, 63)),
    "mom_12_1": (
        252,
        "12-1 month momentum",
        lambda p: np.log(ops.shift(p["close"], 21) / ops.shift(p["close"], 252)),
    ),
    "vol_21": (
        22,
        "21-session realised volatility",
        lambda p: ops.rolling_std(close_log_return(p, 1), 21),
    ),
    "volume_z_21": (21, "volume z-score", lambda p: ops.rolling_zscore(np.log1p(p["volume"]), 21)),
    "amihud_21": (22, "Amihud illiquidity", lambda p: amihud(p, 21)),
    "dist_high_252": (
        252,
        "distance from the 252-session high",
        lambda p: p["close"] / ops.rolling_max(p["close"], 252) - 1.0,
    ),
}


def _base(p: Panel, key: str) -> np.ndarray:
    return memo(p, ("cs_base", key), lambda: stock_only(p, BASES[key][2](p)))


def _register_cs(key: str) -> None:
    lookback, what, _ = BASES[key]
    skip_universe_rank = key in ("ret_21", "vol_21")  # core already registers cs_rank_ret_21 / cs_rank_vol_21
    if not skip_universe_rank:
        feature(
            f"cs_rank_{key}", FAMILY, lookback, f"per-date percentile rank of the {what} in the universe"
        )(lambda p: ops.cross_sectional_rank(_base(p, key)))
    feature(f"cs_z_{key}", FAMILY, lookback, f"per-date z-score of the {what} in the universe")(
        lambda p: cs_zscore(_base(p, key))
    )
    feature(f"sec_rank_{key}", FAMILY, lookback, f"per-date percentile rank of the {what} within its sector")(
        lambda p: within_sector(p, _base(p, key), ops.cross_sectional_rank)
    )
    feature(f"sec_z_{key}", FAMILY, lookback, f"per-date z-score of the {what} within its sector")(
        lambda p: within_sector(p, _base(p, key), cs_zscore)
    )


for _key in BASES:
    _register_cs(_key)


def _mkt_ret(p: Panel, k: int) -> np.ndarray:
    return ops.broadcast_column(p.shape, ops.log_return(market_close(p)[:, None], k)[:, 0])


for _k in (5, 63, 126):
    feature(f"rs_spy_{_k}", FAMILY, _k + 1, f"{_k}-session log return minus SPY's", reads=("market",))(
        bind(lambda p, k: close_log_return(p, k) - _mkt_ret(p, k), _k)
    )
for _k in (5, 21, 63, 126):
    feature(
        f"rs_sector_{_k}",
        FAMILY,
        _k + 1,
        f"{_k}-session log return minus the sector ETF's (SPY fallback)",
        reads=("sector",),
    )(bind(lambda p, k: close_log_return(p, k) - benchmark_log_return(p, k), _k))


def rolling_beta(r: np.ndarray, m: np.ndarray, w: int) -> np.ndarray:
    m = np.where(np.isnan(r), np.nan, m)
    r = np.where(np.isnan(m), np.nan, r)
    cov = ops.rolling_mean(r * m, w) - ops.rolling_mean(r, w) * ops.rolling_mean(m, w)
    var = ops.rolling_mean(m * m, w) - ops.rolling_mean(m, w) ** 2
    return cov / var


def _beta(p: Panel, w: int, sector: bool) -> np.ndarray:
    def compute() -> np.ndarray:
        m = benchmark_log_return(p, 1) if sector else _mkt_ret(p, 1)
        return rolling_beta(close_log_return(p, 1), m, w)

    return memo(p, ("beta", w, sector, p.fill_limit), compute)


feature("beta_252", FAMILY, 253, "rolling 252-session beta of daily returns to SPY", reads=("market",))(
    lambda p: _beta(p, 252, False)
)
feature(
    "beta_sector_63",
    FAMILY,
    64,
    "rolling 63-session beta to the sector ETF (SPY fallback)",
    reads=("sector",),
)(lambda p: _beta(p, 63, True))


def _resid(p: Panel) -> np.ndarray:
    """Daily residual return r - beta_252(t) m, using the beta known at t (fit on rows <= t)."""
    return memo(
        p, ("resid", p.fill_limit), lambda: close_log_return(p, 1) - _beta(p, 252, False) * _mkt_ret(p, 1)
    )


for _k in (21, 63, 126):
    feature(
        f"resid_mom_{_k}",
        FAMILY,
        253 + _k,
        f"residual momentum: sum of market-residual returns over {_k} sessions",
        reads=("market",),
    )(bind(lambda p, k: ops.rolling_sum(_resid(p), k), _k))
feature(
    "idio_vol_63",
    FAMILY,
    316,
    "idiosyncratic volatility: std of market-residual returns over 63 sessions",
    reads=("market",),
)(lambda p: ops.rolling_std(_resid(p), 63))
feature(
    "corr_spy_63", FAMILY, 64, "rolling 63-session correlation of daily returns with SPY", reads=("market",)
)(
    lambda p: (
        _beta(p, 63, False)
        * ops.rolling_std(_mkt_ret(p, 1), 63)
        / ops.rolling_std(close_log_return(p, 1), 63)
    )
)
