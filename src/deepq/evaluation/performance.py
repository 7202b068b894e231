"""Performance statistics of a daily return series, optionally against a benchmark (SPY).

Definitions match quantstats (checked in tests on the same returns): Sharpe and Sortino use rf = 0 and
sqrt(252) annualisation, CAGR is geometric over count/252 years, max drawdown is the worst peak-to-trough
fall of the compounded equity curve (a negative number), Calmar = CAGR / |max drawdown|. The information
ratio here is annualised (quantstats' is per period: divide by sqrt(252) to compare).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PERIODS = 252


def equity_curve(returns: pd.Series) -> pd.Series:
    return (1.0 + returns.fillna(0.0)).cumprod()


def drawdown(returns: pd.Series) -> pd.Series:
    eq = equity_curve(returns)
    peak = np.maximum(eq.cummax(), 1.0)
    return eq / peak - 1.0


def sharpe(r: np.ndarray, periods: int = PERIODS) -> float:
    r = r[np.isfinite(r)]
    sd = r.std(ddof=1) if len(r) > 1 else 0.0
    return float(r.mean() / sd * np.sqrt(periods)) if sd > 0 else float("nan")


def sortino(r: np.ndarray, periods: int = PERIODS) -> float:
    r = r[np.isfinite(r)]
    downside = np.sqrt(np.sum(r[r < 0] ** 2) / len(r)) if len(r) else 0.0
    return float(r.mean() / downside * np.sqrt(periods)) if downside > 0 else float("nan")


def performance(
    returns: pd.Series, benchmark: pd.Series | None = None, periods: int = PERIODS
) -> dict[str, float]:
    r = returns.dropna()
    x = r.to_numpy(np.float64)
    n = len(x)
    if n < 2:
        return {}
    total = float(np.prod(1.0 + x) - 1.0)
    years = n / periods
    cagr = float((1.0 + total) ** (1.0 / years) - 1.0) if total > -1 else float("nan")
    mdd = float(drawdown(r).min())
    nonzero = x[x != 0]
    out = {
        "total_return": total,
        "cagr": cagr,
        "ann_vol": float(x.std(ddof=1) * np.sqrt(periods)),
        "sharpe": sharpe(x, periods),
        "sortino": sortino(x, periods),
        "max_drawdown": mdd,
        "calmar": cagr / abs(mdd) if mdd < 0 else float("nan"),
        "hit_rate": float(np.mean(nonzero > 0)) if len(nonzero) else float("nan"),
        "years": years,
    }
    if benchmark is not None:
        b = benchmark.reindex(r.index)
        ok = b.notna().to_numpy()
        xb, bb = x[ok], b.to_numpy(np.float64)[ok]
        if len(xb) > 2 and bb.var(ddof=1) > 0:
            cov = np.cov(xb, bb)
            beta = cov[0, 1] / cov[1, 1]
            active = xb - bb
            out |= {
                "beta": float(beta),
                "alpha": float((xb.mean() - beta * bb.mean()) * periods),
                "info_ratio": float(active.mean() / active.std(ddof=1) * np.sqrt(periods))
                if active.std(ddof=1) > 0
                else float("nan"),
                "bench_sharpe": sharpe(bb, periods),
                "bench_cagr": float(np.prod(1.0 + bb) ** (periods / len(bb)) - 1.0),
            }
    return out


def yearly_returns(returns: pd.Series) -> pd.Series:
    r = returns.dropna()
    return (1.0 + r).groupby(pd.DatetimeIndex(r.index).year).prod() - 1.0
