"""Risk-forecast metrics: R² on log volatility, QLIKE, and VaR backtests (Kupiec, Christoffersen).

Conventions: volatility forecasts are standard deviations on the same horizon as the realised ones; a VaR
forecast is a (negative) return quantile, breached when the realised return falls below it.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from deepq.evaluation.metrics import _pair, r2


def r2_log_vol(pred_log_vol: np.ndarray, realised_log_vol: np.ndarray) -> float:
    return r2(pred_log_vol, realised_log_vol)


def qlike(pred_var: np.ndarray, realised_var: np.ndarray) -> float:
    """Patton's QLIKE loss, mean of σ²/h - log(σ²/h) - 1 (0 for a perfect forecast, robust to noisy proxies)."""
    h, s2 = _pair(pred_var, realised_var)
    ok = (h > 0) & (s2 > 0)
    ratio = s2[ok] / h[ok]
    return float(np.mean(ratio - np.log(ratio) - 1.0)) if ok.any() else float("nan")


def var_breaches(var_forecast: np.ndarray, realised: np.ndarray) -> np.ndarray:
    """1 where the realised return fell below the VaR quantile, 0 otherwise (NaN pairs dropped)."""
    v, r = _pair(var_forecast, realised)
    return (r < v).astype(np.int64)


def _xlogy(x: float, y: float) -> float:
    return 0.0 if x == 0 else float(x * np.log(y))


def kupiec_test(breaches: np.ndarray, alpha: float) -> tuple[float, float]:
    """Unconditional coverage (proportion of failures) LR test; returns (LR statistic, chi²(1) p-value)."""
    n, x = len(breaches), int(np.sum(breaches))
    if n == 0:
        return float("nan"), float("nan")
    pi = x / n
    ll0 = _xlogy(n - x, 1 - alpha) + _xlogy(x, alpha)
    ll1 = _xlogy(n - x, 1 - pi) + _xlogy(x, pi)
    lr = -2.0 * (ll0 - ll1)
    return float(lr), float(stats.chi2.sf(lr, 1))


def christoffersen_test(breaches: np.ndarray) -> tuple[float, float]:
    """Independence LR test of breaches (first-order Markov against iid); returns (LR statistic, p-value)."""
    b = np.asarray(breaches, dtype=np.int64)
    if len(b) < 2:
        return float("nan"), float("nan")
    prev, cur = b[:-1], b[1:]
    n00 = int(np.sum((prev == 0) & (cur == 0)))
    n01 = int(np.sum((prev == 0) & (cur == 1)))
    n10 = int(np.sum((prev == 1) & (cur == 0)))
    n11 = int(np.sum((prev == 1) & (cur == 1)))
    p01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    p11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    p = (n01 + n11) / (n00 + n01 + n10 + n11)
    ll0 = _xlogy(n00 + n10, 1 - p) + _xlogy(n01 + n11, p)
    ll1 = _xlogy(n00, 1 - p01) + _xlogy(n01, p01) + _xlogy(n10, 1 - p11) + _xlogy(n11, p11)
    lr = max(-2.0 * (ll0 - ll1), 0.0)
    return float(lr), float(stats.chi2.sf(lr, 1))


def var_backtest(var_forecast: np.ndarray, realised: np.ndarray, alpha: float) -> dict[str, float]:
    b = var_breaches(var_forecast, realised)
    lr_uc, p_uc = kupiec_test(b, alpha)
    lr_ind, p_ind = christoffersen_test(b)
    return {
        "n": float(len(b)),
        "breach_rate": float(b.mean()) if len(b) else float("nan"),
        "expected": alpha,
        "kupiec_lr": lr_uc,
        "kupiec_p": p_uc,
        "christoffersen_lr": lr_ind,
        "christoffersen_p": p_ind,
    }
