"""Risk-aware plug-ins: quantile regression with CVaR, a market regime model, and a fat-tailed VaR model.

- `QuantileCVaR`: LightGBM pinball-loss models per quantile level (non-crossing after sorting); the lower-tail
  CVaR (expected shortfall) at `cvar_alpha` is the average of the predicted quantile function below it.
- `RegimeAware`: a two-state Markov switching model of the market's daily return (statsmodels, switching mean
  and variance) is fitted on the training window; its *filtered* probability of the high-volatility state at
  each date (data up to t only) joins the features of a LightGBM, which conditions every split on it.
- `TailRisk`: returns scaled by their EWMA volatility; the standardised training residuals get a Student-t
  fit, or a generalised Pareto fit to the lower tail beyond its 10 % quantile (peaks over threshold); VaR and
  ES at each level are those of the fitted tail times today's volatility. `kupiec_pof` and
  `christoffersen_independence` test the VaR breaches.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from scipy import stats

from deepq.baselines.boosting import Boosted, quantile_names
from deepq.baselines.common import check_task, cvar_from_quantiles, daily_log_returns
from deepq.dataset.context import PanelData, Predictions
from deepq.dataset.folds import Fold
from deepq.features import ops

MARKET = "SPY"


class QuantileCVaR(Boosted):
    def __init__(
        self,
        name: str = "lightgbm_quantile",
        quantiles: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975, 0.99),
        cvar_alpha: float = 0.05,
        **kw,
    ):
        super().__init__(name, "lightgbm", quantiles=tuple(quantiles), **kw)
        self.cvar_alpha = cvar_alpha

    def fit(self, data: PanelData, fold: Fold) -> None:
        check_task(self.name, data.task.name, ("returns", "risk"))
        super().fit(data, fold)

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        p = super().predict(data, index)
        if data.task.name != "returns" or p.extra is None:
            return p
        assert self.quantiles is not None
        q = np.stack([p.extra[n] for n in quantile_names(self.quantiles)], axis=1)
        cvar = cvar_from_quantiles(np.array(self.quantiles), q, self.cvar_alpha)
        return Predictions(
            p.pred, p.score, p.up, p.extra | {f"cvar{round(self.cvar_alpha * 1000):03d}": cvar}
        )


def market_returns(data: PanelData) -> np.ndarray:
    """[T] the market's daily log return: SPY where the panel has it, else the equal-weight stock mean."""
    r = daily_log_returns(data)
    if MARKET in data.panel.symbols:
        m = r[:, data.panel.symbol_index(MARKET)]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m = np.nanmean(np.where(data.panel.mask(("stock",))[None, :], r, np.nan), axis=1)
    return np.nan_to_num(m)


_REGIME_PARAMS: dict[tuple[bytes, int, int], tuple[np.ndarray, int]] = {}
REGIME_KW = {"k_regimes": 2, "trend": "c", "switching_variance": True}


def regime_probabilities(returns: np.ndarray, train: tuple[int, int]) -> np.ndarray:
    """[T] filtered P(high-volatility state | returns up to t), parameters fitted on rows `train` only.
    The fit is cached on the training slice, so every task and model of a process shares one per fold."""
    import hashlib

    from statsmodels.tsa.regime_switching.markov_regression import MarkovRegression

    y = returns * 100.0
    fit_rows = y[train[0] : train[1]]
    key = (hashlib.sha1(np.ascontiguousarray(fit_rows).tobytes()).digest(), int(train[0]), int(train[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if key not in _REGIME_PARAMS:
            fitted = MarkovRegression(fit_rows, **REGIME_KW).fit(disp=False)
            names = list(fitted.model.param_names)
            high = int(np.argmax([fitted.params[names.index(f"sigma2[{k}]")] for k in range(2)]))
            _REGIME_PARAMS[key] = (np.asarray(fitted.params), high)
        params, high = _REGIME_PARAMS[key]
        filt = MarkovRegression(y, **REGIME_KW).filter(params)
    probs = np.asarray(filt.filtered_marginal_probabilities)  # [T, 2]
    return np.clip(probs[:, high], 0.0, 1.0)  # filter rounding can overshoot 1 by 1 ulp


class RegimeAware(Boosted):
    """LightGBM whose features include the market's filtered high-volatility regime probability."""

    def __init__(self, name: str = "regime_lightgbm", **kw):
        super().__init__(name, "lightgbm", **kw)
        self.p_high: np.ndarray | None = None

    def extra_features(self, data: PanelData, index: np.ndarray) -> np.ndarray | None:
        assert self.p_high is not None
        return self.p_high[index[:, 0], None]

    def fit(self, data: PanelData, fold: Fold) -> None:
        self.p_high = regime_probabilities(market_returns(data), fold.train)
        super().fit(data, fold)

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        p = super().predict(data, index)
        assert self.p_high is not None
        return Predictions(p.pred, p.score, p.up, (p.extra or {}) | {"p_high_vol": self.p_high[index[:, 0]]})


def _xlogy(k: float, p: float) -> float:
    return float(k * np.log(p)) if k > 0 else 0.0


def kupiec_pof(breaches: np.ndarray, alpha: float) -> tuple[float, float]:
    """Kupiec's proportion-of-failures LR test that the breach rate equals alpha: (LR statistic, p-value)."""
    b = np.asarray(breaches, dtype=bool)
    n, x = len(b), int(b.sum())
    if n == 0:
        return float("nan"), float("nan")
    pi = x / n
    ll_null = _xlogy(n - x, 1 - alpha) + _xlogy(x, alpha)
    ll_alt = _xlogy(n - x, 1 - pi) + _xlogy(x, pi)
    lr = max(-2 * (ll_null - ll_alt), 0.0)
    return lr, float(stats.chi2.sf(lr, 1))


def christoffersen_independence(breaches: np.ndarray) -> tuple[float, float]:
    """Christoffersen's LR test that a breach today does not make one tomorrow more likely: (LR, p-value)."""
    b = np.asarray(breaches, dtype=int)
    prev, cur = b[:-1], b[1:]
    n00, n01 = int(((prev == 0) & (cur == 0)).sum()), int(((prev == 0) & (cur == 1)).sum())
    n10, n11 = int(((prev == 1) & (cur == 0)).sum()), int(((prev == 1) & (cur == 1)).sum())

    p01, p11 = n01 / max(n00 + n01, 1), n11 / max(n10 + n11, 1)
    p = (n01 + n11) / max(n00 + n01 + n10 + n11, 1)
    ll0 = _xlogy(n00 + n10, 1 - p) + _xlogy(n01 + n11, p)
    ll1 = _xlogy(n00, 1 - p01) + _xlogy(n01, p01) + _xlogy(n10, 1 - p11) + _xlogy(n11, p11)
    lr = float(max(-2 * (ll0 - ll1), 0.0))
    return lr, float(stats.chi2.sf(lr, 1))


class TailRisk:
    """Fat-tailed VaR/ES of the next h-day return (returns task): EWMA volatility times a tail fitted to the
    standardised training residuals. `pred` is 0 (no view on the mean), `score` the 5 % ES (less negative = safer,
    ranks higher), extra `var010`, `var050`, `es050` (returns: negative numbers are losses)."""

    LEVELS = (0.01, 0.05)
    EWMA_LAMBDA = 0.94

    def __init__(
        self, name: str = "tail_risk", tail: Literal["student_t", "gpd"] = "student_t", threshold: float = 0.1
    ):
        if tail not in ("student_t", "gpd"):
            raise ValueError(f"{name}: tail must be 'student_t' or 'gpd', got {tail!r}")
        self.name, self.tail, self.threshold = name, tail, threshold
        self.z_var: dict[float, float] = {}
        self.z_es: dict[float, float] = {}
        self.sigma: np.ndarray | None = None

    def _sigma(self, data: PanelData) -> np.ndarray:
        r = daily_log_returns(data)
        var = ops.frame(r * r).ewm(alpha=1 - self.EWMA_LAMBDA, min_periods=21, ignore_na=True).mean()
        return np.sqrt(var.to_numpy())

    def fit(self, data: PanelData, fold: Fold) -> None:
        check_task(self.name, data.task.name, ("returns",))
        self.sigma = self._sigma(data)
        r = daily_log_returns(data)
        idx = data.split_index(fold, "train")
        t, s = idx[:, 0], idx[:, 1]
        ok = t + 1 < len(r)
        z = (
            r[t[ok] + 1, s[ok]] / self.sigma[t[ok], s[ok]]
        )  # next day's return over the vol known the day before
        z = z[np.isfinite(z)]
        if len(z) < 500:
            raise ValueError(f"{self.name}: fold {fold.index} has only {len(z)} standardised residuals")
        if self.tail == "student_t":
            df, loc, scale = stats.t.fit(z)
            for a in self.LEVELS:
                q = stats.t.ppf(a, df, loc, scale)
                self.z_var[a] = float(q)
                # ES of a Student-t lower tail, closed form
                tq = stats.t.ppf(a, df)
                es_std = -stats.t.pdf(tq, df) / a * (df + tq**2) / (df - 1)
                self.z_es[a] = float(loc + scale * es_std)
        else:
            u = float(np.quantile(z, self.threshold))
            excess = u - z[z < u]  # losses beyond the threshold, positive
            xi, _, beta = stats.genpareto.fit(excess, floc=0.0)
            p_u = self.threshold
            for a in self.LEVELS:
                if a >= p_u:
                    raise ValueError(f"{self.name}: level {a} must be below the GPD threshold {p_u}")
                y = beta / xi * ((a / p_u) ** (-xi) - 1) if abs(xi) > 1e-6 else -beta * np.log(a / p_u)
                self.z_var[a] = float(u - y)
                es_excess = (y + beta) / (1 - xi) if xi < 1 else np.inf  # mean excess beyond VaR
                self.z_es[a] = float(u - es_excess)

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        if self.sigma is None:
            raise RuntimeError(f"{self.name}: fit before predict")
        scale = self.sigma[index[:, 0], index[:, 1]] * np.sqrt(data.task.horizon_days)
        extra = {}
        for a in self.LEVELS:
            key = f"{round(a * 1000):03d}"
            extra[f"var{key}"] = self.z_var[a] * scale
            extra[f"es{key}"] = self.z_es[a] * scale
        n = len(index)
        return Predictions(np.zeros(n), extra["es050"].copy(), np.full(n, np.nan), extra)
