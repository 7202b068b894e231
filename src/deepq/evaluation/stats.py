"""Overfitting-aware statistics: honest intervals and tests for numbers printed from a backtest.

- Date-clustered intervals: daily cross-sections are correlated, so the unit of independent evidence is
  the date, not the symbol-day (an iid interval on a million rows is about ten times too narrow).
- Stationary bootstrap (Politis & Romano 1994) for Sharpe ratios and accuracies of serially dependent series.
- Probabilistic and deflated Sharpe ratio (Bailey & López de Prado 2012, 2014) given the number of trials.
- Probability of backtest overfitting via combinatorially symmetric cross-validation (Bailey et al. 2017).
- Binomial tests of direction accuracy against 50 % and, paired, against always-up.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

EULER_GAMMA = 0.5772156649015329


# ------------------------------------------------------------------------------------------ clustered
def clustered_mean_ci(
    values: np.ndarray, clusters: np.ndarray, level: float = 0.95
) -> tuple[float, float, float, float]:
    """Mean of `values` with a cluster-robust (CR1) standard error, clusters = dates.

    Equals the constant-only OLS with cov_type="cluster" in statsmodels. Returns (mean, se, lo, hi).
    """
    x = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(x)
    x, g = x[ok], np.asarray(clusters)[ok]
    n = len(x)
    if n < 2:
        return float("nan"), float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    sums = pd.Series(x - mean).groupby(g).sum().to_numpy()
    G = len(sums)
    if G < 2:
        return mean, float("nan"), float("nan"), float("nan")
    var = (G / (G - 1)) * ((n - 1) / (n - 1)) * np.sum(sums**2) / n**2
    se = float(np.sqrt(var))
    z = stats.t.ppf(0.5 + level / 2, G - 1)
    return mean, se, mean - z * se, mean + z * se


def newey_west_mean_ci(
    series: np.ndarray, lags: int = 0, level: float = 0.95
) -> tuple[float, float, float, float]:
    """Mean of a time series with a Newey-West (Bartlett) standard error: for daily IC with overlapping labels."""
    x = np.asarray(series, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 3:
        return float("nan"), float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    e = x - mean
    lrv = np.dot(e, e) / n
    for k in range(1, min(lags, n - 1) + 1):
        lrv += 2 * (1 - k / (lags + 1)) * np.dot(e[k:], e[:-k]) / n
    se = float(np.sqrt(max(lrv, 0.0) / n))
    z = stats.norm.ppf(0.5 + level / 2)
    return mean, se, mean - z * se, mean + z * se


# -------------------------------------------------------------------------------------------- bootstrap
def stationary_bootstrap_indices(
    n: int, n_boot: int, mean_block: float, rng: np.random.Generator
) -> np.ndarray:
    """[n_boot, n] resampled positions: blocks of geometric length (mean `mean_block`), wrapping around."""
    p = 1.0 / max(mean_block, 1.0)
    idx = np.empty((n_boot, n), dtype=np.int64)
    idx[:, 0] = rng.integers(0, n, n_boot)
    new_block = rng.random((n_boot, n)) < p
    starts = rng.integers(0, n, (n_boot, n))
    for t in range(1, n):
        idx[:, t] = np.where(new_block[:, t], starts[:, t], (idx[:, t - 1] + 1) % n)
    return idx


def stationary_bootstrap_ci(
    x: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    n_boot: int = 1000,
    mean_block: float = 10.0,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(point, lo, hi) percentile interval; `statistic` maps [B, n] resamples to [B] values (and [n] to scalar)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 10:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = stationary_bootstrap_indices(len(x), n_boot, mean_block, rng)
    boot = np.asarray(statistic(x[idx]), dtype=np.float64)
    lo, hi = np.nanpercentile(boot, [50 * (1 - level), 50 * (1 + level)])
    return float(statistic(x[None, :])[0]), float(lo), float(hi)


def sharpe_stat(periods: int = 252) -> Callable[[np.ndarray], np.ndarray]:
    def f(a: np.ndarray) -> np.ndarray:
        sd = a.std(axis=-1, ddof=1)
        return np.where(sd > 0, a.mean(axis=-1) / np.where(sd > 0, sd, 1.0) * np.sqrt(periods), np.nan)

    return f


def mean_stat(a: np.ndarray) -> np.ndarray:
    return a.mean(axis=-1)


# ----------------------------------------------------------------------------------------------- Sharpe
def probabilistic_sharpe_ratio(returns: np.ndarray, sr_benchmark: float = 0.0) -> float:
    """P(true per-period Sharpe > sr_benchmark) given skew and kurtosis of the sample (Bailey & LdP 2012)."""
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    n = len(r)
    if n < 3 or r.std(ddof=1) == 0:
        return float("nan")
    sr = r.mean() / r.std(ddof=1)
    skew = stats.skew(r)
    kurt = stats.kurtosis(r, fisher=False)
    den = np.sqrt(max(1 - skew * sr + (kurt - 1) / 4 * sr**2, 1e-12))
    return float(stats.norm.cdf((sr - sr_benchmark) * np.sqrt(n - 1) / den))


def expected_max_sharpe(n_trials: int, var_trial_sr: float) -> float:
    """Expected maximum of n_trials per-period Sharpe ratios under the null of no skill (false strategy theorem)."""
    if n_trials <= 1:
        return 0.0
    z1 = stats.norm.ppf(1 - 1.0 / n_trials)
    z2 = stats.norm.ppf(1 - 1.0 / (n_trials * np.e))
    return float(np.sqrt(var_trial_sr) * ((1 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))


def deflated_sharpe_ratio(
    returns: np.ndarray, n_trials: int, var_trial_sr: float | None = None
) -> tuple[float, float]:
    """(DSR, SR0): PSR against the Sharpe the best of `n_trials` skill-less trials would reach by luck.

    `var_trial_sr` is the variance of the trials' per-period Sharpe ratios (from a sweep); without it, the
    variance of one Sharpe estimate under the null, 1/(n-1), is used.
    """
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) < 3:
        return float("nan"), float("nan")
    v = var_trial_sr if var_trial_sr is not None and np.isfinite(var_trial_sr) else 1.0 / (len(r) - 1)
    sr0 = expected_max_sharpe(n_trials, v)
    return probabilistic_sharpe_ratio(r, sr0), sr0


def pbo_cscv(perf: np.ndarray, n_splits: int = 16, max_combinations: int = 2000, seed: int = 0) -> float:
    """Probability of backtest overfitting: [T, N] per-period returns of N configurations.

    The T rows are cut into `n_splits` blocks; for each half/half split of the blocks the configuration with
    the best in-sample Sharpe is ranked out of sample; PBO is the share of splits where it lands in the bottom
    half (logit of its relative rank <= 0).
    """
    m = np.asarray(perf, dtype=np.float64)
    T, N = m.shape
    if N < 2 or n_splits * 2 > T:
        return float("nan")
    n_splits -= n_splits % 2
    blocks = np.array_split(np.arange(T), n_splits)
    combos = list(itertools.combinations(range(n_splits), n_splits // 2))
    if len(combos) > max_combinations:
        rng = np.random.default_rng(seed)
        combos = [combos[i] for i in rng.choice(len(combos), max_combinations, replace=False)]

    def sharpe(rows: np.ndarray) -> np.ndarray:
        x = m[rows]
        sd = np.nanstd(x, axis=0, ddof=1)
        return np.nanmean(x, axis=0) / np.where(sd > 0, sd, np.nan)

    logits = []
    for c in combos:
        ins = np.concatenate([blocks[i] for i in c])
        oos = np.concatenate([blocks[i] for i in range(n_splits) if i not in c])
        best = int(np.nanargmax(sharpe(ins)))
        oos_sr = sharpe(oos)
        rank = stats.rankdata(np.nan_to_num(oos_sr, nan=-np.inf))[best] / (N + 1)
        logits.append(np.log(rank / (1 - rank)))
    return float(np.mean(np.asarray(logits) <= 0))


# ------------------------------------------------------------------------------------------- binomial
def binomial_tests(correct: np.ndarray, up_correct: np.ndarray) -> dict[str, float]:
    """Direction accuracy vs 50 % (one-sided binomial) and vs always-up on the same rows (exact McNemar:
    a sign test on the rows where the two disagree). Both treat rows as iid: read beside the clustered CI."""
    c = np.asarray(correct, dtype=bool)
    u = np.asarray(up_correct, dtype=bool)
    n, k = len(c), int(c.sum())
    if n == 0:
        return {"p_vs_50": float("nan"), "p_vs_always_up": float("nan"), "n_discordant": 0.0}
    p50 = stats.binomtest(k, n, 0.5, alternative="greater").pvalue
    wins, losses = int(np.sum(c & ~u)), int(np.sum(~c & u))
    p_up = (
        stats.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue
        if wins + losses
        else float("nan")
    )
    return {"p_vs_50": float(p50), "p_vs_always_up": float(p_up), "n_discordant": float(wins + losses)}
