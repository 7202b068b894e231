"""Volatility baselines for the risk task (label: log realised volatility of the next h daily returns).

HAR-RV (Corsi 2009): log future vol regressed on log realised vol over the last 1, 5 and 22 sessions,
one pooled OLS over the training window's cells. GARCH(1,1) (Bollerslev 1986): fitted per symbol by
`arch` on its training-window returns, then filtered forward with the fitted parameters so that a forecast
at date t uses returns up to t only; the h-day forecast averages E_t[r^2] over t+1 .. t+h.
"""

from __future__ import annotations

import warnings

import numpy as np

from deepq.baselines.common import check_task, daily_log_returns, from_point, targets
from deepq.dataset.context import PanelData, Predictions
from deepq.dataset.folds import Fold
from deepq.features import ops

HAR_WINDOWS = (1, 5, 22)
VAR_FLOOR = 1e-8  # (0.01 % a day)^2: keeps log vol finite on flat days


def har_design(data: PanelData, windows: tuple[int, ...] = HAR_WINDOWS) -> np.ndarray:
    """[T, N, 1 + len(windows)]: a constant and log realised vol over each trailing window (known at t)."""
    r = daily_log_returns(data)
    cols = [np.ones(r.shape)]
    for w in windows:
        ms = ops.frame(r * r).rolling(w, min_periods=w).mean().to_numpy()
        cols.append(0.5 * np.log(np.maximum(ms, VAR_FLOOR)))
    return np.stack(cols, axis=2)


class HAR:
    """Pooled HAR-RV in logs; `coef` holds the last fold's OLS coefficients (const, daily, weekly, monthly)."""

    def __init__(self, name: str = "har", windows: tuple[int, ...] = HAR_WINDOWS):
        self.name, self.windows = name, tuple(windows)
        self.coef: np.ndarray | None = None
        self._design: tuple[int, np.ndarray] | None = None

    def design(self, data: PanelData) -> np.ndarray:
        if self._design is None or self._design[0] != id(data):
            self._design = (id(data), har_design(data, self.windows))
        return self._design[1]

    def fit(self, data: PanelData, fold: Fold) -> None:
        check_task(self.name, data.task.name, ("risk",))
        idx = data.split_index(fold, "train")
        x, y = self.design(data)[idx[:, 0], idx[:, 1]], targets(data, idx)
        ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
        if ok.sum() <= x.shape[1]:
            raise ValueError(f"{self.name}: fold {fold.index} has {int(ok.sum())} usable training rows")
        self.coef = np.linalg.lstsq(x[ok], y[ok], rcond=None)[0]

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        if self.coef is None:
            raise RuntimeError(f"{self.name}: fit before predict")
        x = self.design(data)[index[:, 0], index[:, 1]]
        return from_point("risk", x @ self.coef)


def arch_backcast(resid: np.ndarray) -> float:
    """The starting variance `arch` uses for GARCH: exponentially weighted mean of the first 75 squares."""
    tau = min(75, len(resid))
    w = 0.94 ** np.arange(tau)
    return float(np.sum(resid[:tau] ** 2 * (w / w.sum())))


def garch_variance_path(
    resid: np.ndarray, omega: float, alpha: float, beta: float, backcast: float, horizon_days: int
) -> np.ndarray:
    """[n, h] forecasts made at each step t of E_t[sigma^2_{t+k}], k = 1..h, for a GARCH(1,1).

    sigma^2_{t+1} = omega + alpha * e_t^2 + beta * sigma^2_t, with sigma^2_0 = e_{-1}^2 = backcast;
    k steps ahead it reverts to omega / (1 - alpha - beta) at rate (alpha + beta) per step.
    """
    n = len(resid)
    s2 = np.empty(n + 1)
    s2[0] = omega + (alpha + beta) * backcast
    for t in range(n):  # sigma^2 of step t+1, from step t's residual
        s2[t + 1] = omega + alpha * resid[t] ** 2 + beta * s2[t]
    nxt = s2[1:]
    persistence = alpha + beta
    out = np.empty((n, horizon_days))
    out[:, 0] = nxt
    for k in range(1, horizon_days):
        out[:, k] = omega + persistence * out[:, k - 1]
    return out


class GARCH:
    """GARCH(1,1) with a constant mean per symbol (risk task only); returns scaled to percent for the fit."""

    SCALE = 100.0

    def __init__(self, name: str = "garch", max_train_days: int | None = 2520, min_train_days: int = 250):
        self.name, self.max_train_days, self.min_train_days = name, max_train_days, min_train_days
        self.forecast: np.ndarray | None = None  # [T, N] log vol forecast made at each date
        self.params: dict[int, tuple[float, float, float, float]] = {}

    def fit(self, data: PanelData, fold: Fold) -> None:
        from arch import arch_model

        check_task(self.name, data.task.name, ("risk",))
        h = data.task.horizon_days
        r = daily_log_returns(data) * self.SCALE
        T, N = r.shape
        start, stop = fold.train
        if self.max_train_days:
            start = max(start, stop - self.max_train_days)
        out = np.full((T, N), np.nan)
        self.params = {}
        for s in np.unique(data.split_index(fold, "train")[:, 1]):
            rows = np.arange(start, T)
            rows = rows[np.isfinite(r[rows, s])]
            train_rows = rows[rows < stop]
            if len(train_rows) < self.min_train_days:
                continue
            y = r[train_rows, s]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence chatter; a failed fit falls back below
                res = arch_model(y, mean="Constant", vol="GARCH", p=1, q=1, rescale=False).fit(disp="off")
            mu, omega, alpha, beta = (float(res.params[k]) for k in ("mu", "omega", "alpha[1]", "beta[1]"))
            if not np.isfinite([mu, omega, alpha, beta]).all() or alpha + beta >= 1:
                continue
            self.params[int(s)] = (mu, omega, alpha, beta)
            resid = r[rows, s] - mu
            path = garch_variance_path(resid, omega, alpha, beta, arch_backcast(y - mu), h)
            out[rows, s] = 0.5 * np.log((path + mu**2).mean(axis=1)) - np.log(self.SCALE)
        self.forecast = out

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        if self.forecast is None:
            raise RuntimeError(f"{self.name}: fit before predict")
        return from_point("risk", self.forecast[index[:, 0], index[:, 1]])
