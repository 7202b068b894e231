"""Classical per-symbol time-series baselines via statsforecast: ARIMA, ETS and MSTL (Prophet's spirit).

Each symbol's series is modelled on its own, fitted on (the last `max_train_days` of) its training window:
    returns: y_t = the log return earned on session t; the label of date t is y_{t+2} + ... + y_{t+1+h}
             (next-close execution skips session t+1), so the forecast sums the 2..h+1-step forecasts
    risk:    y_t = log realised vol over the h sessions up to t; the label of date t is y_{t+h}
ARIMA and ETS are then run forward over the test block with their fitted coefficients fixed, so a forecast
made at t uses data up to t only (as a live model re-filtered each day would). MSTL forecasts once from
the end of the training window: its seasonal profile is the forecast, the classic multi-step baseline.
"""

from __future__ import annotations

import warnings

import numpy as np

from deepq.baselines.common import check_task, daily_log_returns, from_point
from deepq.dataset.context import PanelData, Predictions
from deepq.dataset.folds import Fold
from deepq.features import ops

VAR_FLOOR = 1e-8


def symbol_series(data: PanelData) -> np.ndarray:
    """[T, N] the series each symbol's model sees, for the run's task (see the module docstring)."""
    r = daily_log_returns(data)
    if data.task.name == "returns":
        return r
    h = max(data.task.horizon_days, 1)
    ms = ops.frame(r * r).rolling(h, min_periods=h).mean().to_numpy()
    return np.where(np.isfinite(ms), 0.5 * np.log(np.maximum(ms, VAR_FLOOR)), np.nan)


def steps(task: str, horizon_days: int) -> list[int]:
    """Which k-step-ahead forecasts of the series make up the label (summed)."""
    return list(range(2, horizon_days + 2)) if task == "returns" else [horizon_days]


def arma_forecasts(y: np.ndarray, mu: float, ar: np.ndarray, ma: np.ndarray, ks: list[int]) -> np.ndarray:
    """Sum over k in ks of the k-step forecasts of an ARMA(p, q) with mean mu, made at every origin t.

    Residuals are filtered causally from zero: e_t = (y_t - mu) - sum_i ar_i (y_{t-i} - mu) - sum_j ma_j e_{t-j}.
    """
    n, p, q = len(y), len(ar), len(ma)
    z = y - mu
    e = np.zeros(n)
    for t in range(n):
        acc = z[t]
        for i in range(1, min(p, t) + 1):
            acc -= ar[i - 1] * z[t - i]
        for j in range(1, min(q, t) + 1):
            acc -= ma[j - 1] * e[t - j]
        e[t] = acc

    def lag(a: np.ndarray, m: int) -> np.ndarray:  # b[t] = a[t + m] for m <= 0 (zero before the start)
        if m == 0:
            return a.copy()
        out = np.zeros(n)
        out[-m:] = a[: n + m]
        return out

    f: dict[int, np.ndarray] = {}
    for k in range(1, max(ks) + 1):
        acc = np.zeros(n)
        for i in range(1, p + 1):
            acc += ar[i - 1] * (f[k - i] if k - i >= 1 else lag(z, k - i))
        for j in range(1, q + 1):
            if k - j <= 0:
                acc += ma[j - 1] * lag(e, k - j)
        f[k] = acc
    total: np.ndarray = np.sum([f[k] for k in ks], axis=0)
    return total + mu * len(ks)


class PerSymbol:
    """Shared loop: per symbol, fit on the training rows, forecast at every later row; subclasses say how."""

    name: str
    supports = ("returns", "risk")

    def __init__(self, max_train_days: int = 1000, min_train_days: int = 250):
        self.max_train_days, self.min_train_days = max_train_days, min_train_days
        self.forecast: np.ndarray | None = None

    def forecast_symbol(self, y: np.ndarray, n_train: int, ks: list[int]) -> np.ndarray:
        raise NotImplementedError

    def fit(self, data: PanelData, fold: Fold) -> None:
        check_task(self.name, data.task.name, self.supports)
        series = symbol_series(data)
        ks = steps(data.task.name, data.task.horizon_days)
        T, N = series.shape
        start, stop = max(fold.train[0], fold.train[1] - self.max_train_days), fold.train[1]
        out = np.full((T, N), np.nan)
        for s in np.unique(data.split_index(fold, "train")[:, 1]):
            rows = np.arange(start, T)
            rows = rows[np.isfinite(series[rows, s])]
            n_train = int((rows < stop).sum())
            if n_train < self.min_train_days:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[rows, s] = self.forecast_symbol(series[rows, s], n_train, ks)
        self.forecast = out

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        if self.forecast is None:
            raise RuntimeError(f"{self.name}: fit before predict")
        return from_point(data.task.name, self.forecast[index[:, 0], index[:, 1]])


class ARIMA(PerSymbol):
    """AutoARIMA (no differencing: both series are stationary) chosen on the training rows, run forward."""

    def __init__(self, name: str = "arima", max_p: int = 3, max_q: int = 3, **kw: int):
        super().__init__(**kw)
        self.name, self.max_p, self.max_q = name, max_p, max_q
        self.orders: dict[int, tuple[int, int]] = {}

    def forecast_symbol(self, y: np.ndarray, n_train: int, ks: list[int]) -> np.ndarray:
        from statsforecast.models import AutoARIMA

        m = AutoARIMA(max_p=self.max_p, max_q=self.max_q, max_d=0, seasonal=False).fit(y[:n_train])
        coef, (p, q) = m.model_["coef"], m.model_["arma"][:2]
        ar = np.array([coef[f"ar{i}"] for i in range(1, p + 1)], dtype=float)
        ma = np.array([coef[f"ma{j}"] for j in range(1, q + 1)], dtype=float)
        mu = float(coef.get("intercept", 0.0))
        return arma_forecasts(y, mu, ar, ma, ks)


class ETS(PerSymbol):
    """Simple exponential smoothing (AutoETS 'ANN', the ETS form that fits a trendless daily series):
    every k-step forecast is the current level."""

    def __init__(self, name: str = "ets", **kw: int):
        super().__init__(**kw)
        self.name = name

    def forecast_symbol(self, y: np.ndarray, n_train: int, ks: list[int]) -> np.ndarray:
        from statsforecast.models import AutoETS

        m = AutoETS(model="ANN").fit(y[:n_train])
        alpha, level0 = float(m.model_["par"][0]), float(m.model_["par"][-1])
        level = np.empty(len(y))
        prev = level0
        for t in range(len(y)):  # l_t = l_{t-1} + alpha (y_t - l_{t-1})
            prev = prev + alpha * (y[t] - prev)
            level[t] = prev
        return level * len(ks)


class MSTLModel(PerSymbol):
    """MSTL (weekly and monthly seasonality, ETS trend) fitted on the training rows and forecast from their
    end: a deterministic seasonal profile, not updated through the test block."""

    def __init__(self, name: str = "mstl", season_length: tuple[int, ...] = (5, 21), **kw: int):
        super().__init__(**kw)
        self.name, self.season_length = name, list(season_length)

    def forecast_symbol(self, y: np.ndarray, n_train: int, ks: list[int]) -> np.ndarray:
        from statsforecast.models import MSTL

        ahead = len(y) - n_train + max(ks)
        path = np.asarray(MSTL(season_length=self.season_length).fit(y[:n_train]).predict(ahead)["mean"])
        full = np.concatenate([np.full(n_train, np.nan), path])  # full[j] = forecast of y_j (j >= n_train)
        out = np.full(len(y), np.nan)
        origins = np.arange(n_train - 1, len(y))
        out[origins] = np.sum([full[origins + k] for k in ks], axis=0)
        return out
