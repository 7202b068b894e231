"""Forecast, classification and cross-sectional metrics over out-of-fold predictions.

The OOF frame has one row per (model, date, symbol): `y` the task label, `y_ret` the forward return of the
same holding period, `pred` the forecast on the label's scale (NaN if the model has none), `score` a ranking
score (NaN if none) and `up` the predicted direction (1/0, NaN if none). Direction accuracy is computed on
exactly the rows a model scored, so always-up beside it is a fair comparison.

Every formula here is checked against a reference implementation in tests/evaluation (sklearn for the
classification metrics, scipy for correlations). They are written out in numpy so that they accept NaN
(dropped pairwise) and stay fast on millions of rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from deepq.dataset.crosssection import DateGroups, daily_ic_of
from deepq.dataset.targets import MIN_NAMES

MIN_NAMES_FOR_IC = MIN_NAMES  # one threshold for every IC deepq computes
EPS = 1e-15


def _pair(*arrays: np.ndarray) -> list[np.ndarray]:
    arrays_f = [np.asarray(a, dtype=np.float64) for a in arrays]
    ok = np.logical_and.reduce([np.isfinite(a) for a in arrays_f])
    return [a[ok] for a in arrays_f]


# ----------------------------------------------------------------------------------------------- forecast
def mse(pred: np.ndarray, y: np.ndarray) -> float:
    p, t = _pair(pred, y)
    return float(np.mean((p - t) ** 2)) if len(p) else float("nan")


def mae(pred: np.ndarray, y: np.ndarray) -> float:
    p, t = _pair(pred, y)
    return float(np.mean(np.abs(p - t))) if len(p) else float("nan")


def r2(pred: np.ndarray, y: np.ndarray) -> float:
    """Out-of-sample R² = 1 - SSE/SST around the realised mean (sklearn's r2_score)."""
    p, t = _pair(pred, y)
    if len(t) < 2:
        return float("nan")
    sst = np.sum((t - t.mean()) ** 2)
    return float(1.0 - np.sum((t - p) ** 2) / sst) if sst > 0 else float("nan")


def pinball_loss(q_pred: np.ndarray, y: np.ndarray, tau: float) -> float:
    """Mean quantile (pinball) loss at level tau (sklearn's mean_pinball_loss with alpha=tau)."""
    q, t = _pair(q_pred, y)
    d = t - q
    return float(np.mean(np.maximum(tau * d, (tau - 1) * d))) if len(t) else float("nan")


def crps_from_quantiles(q_preds: np.ndarray, taus: Sequence[float], y: np.ndarray) -> float:
    """CRPS approximated as 2 x the mean pinball loss over a grid of quantile levels (Gneiting & Raftery)."""
    q_preds = np.asarray(q_preds, dtype=np.float64)
    losses = [pinball_loss(q_preds[:, j], y, tau) for j, tau in enumerate(taus)]
    return float(2.0 * np.mean(losses))


def interval_coverage(lo: np.ndarray, hi: np.ndarray, y: np.ndarray) -> float:
    a, b, t = _pair(lo, hi, y)
    return float(np.mean((t >= a) & (t <= b))) if len(t) else float("nan")


# ----------------------------------------------------------------------------------------- classification
def direction_accuracy(up: np.ndarray, y_ret: np.ndarray) -> float:
    ok = np.isfinite(up) & np.isfinite(y_ret)
    return float(np.mean((up[ok] > 0.5) == (y_ret[ok] > 0))) if ok.any() else float("nan")


def roc_auc(y_true: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney rank statistic (ties get half credit)."""
    y, s = _pair(y_true, p)
    pos = y > 0.5
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = stats.rankdata(s)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def classification_metrics(
    y_true: np.ndarray, p_up: np.ndarray, up: np.ndarray | None = None
) -> dict[str, float]:
    """Binary metrics of P(up) against the realised direction; `up` (hard call) defaults to p_up > 0.5."""
    y, p = _pair(y_true, p_up)
    if len(y) == 0:
        return {k: float("nan") for k in ("accuracy", "balanced_accuracy", "f1", "log_loss", "auc", "brier")}
    hard = (p > 0.5) if up is None else (_pair(y_true, p_up, up)[2] > 0.5)
    yb = y > 0.5
    tp, tn = np.sum(hard & yb), np.sum(~hard & ~yb)
    fp, fn = np.sum(hard & ~yb), np.sum(~hard & yb)
    tpr = tp / (tp + fn) if tp + fn else np.nan
    tnr = tn / (tn + fp) if tn + fp else np.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
    pc = np.clip(p, EPS, 1 - EPS)
    return {
        "accuracy": float(np.mean(hard == yb)),
        "balanced_accuracy": float(np.nanmean([tpr, tnr])),
        "f1": float(f1),
        "log_loss": float(-np.mean(yb * np.log(pc) + (~yb) * np.log(1 - pc))),
        "auc": roc_auc(y, p),
        "brier": float(np.mean((p - yb) ** 2)),
    }


def confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[float]) -> np.ndarray:
    """Counts [true class, predicted class] (sklearn's confusion_matrix layout)."""
    t, p = _pair(y_true, y_pred)
    out = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            out[i, j] = int(np.sum((t == a) & (p == b)))
    return out


def calibration_table(y_true: np.ndarray, p: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Reliability diagram data: mean forecast and observed frequency per probability bin (uniform bins)."""
    y, s = _pair(y_true, p)
    # a probability on an edge belongs to the lower bin (sklearn's calibration_curve convention)
    bins = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], s)
    frame = pd.DataFrame({"bin": bins, "p": s, "y": y > 0.5})
    g = frame.groupby("bin").agg(mean_pred=("p", "mean"), frac_up=("y", "mean"), n=("y", "size"))
    return g.reset_index()


# --------------------------------------------------------------------------------------- cross-sectional
def ic_by_date(
    df: pd.DataFrame, score: str = "score", target: str = "y_ret", method: str = "spearman"
) -> tuple[pd.Series, int]:
    """Per-date correlation between score and target across names, and the number of all-tied dates.

    method = "spearman" (rank IC) or "pearson" (IC). The convention is the boosters' early-stopping one
    (deepq.dataset.crosssection.IC_CONVENTION): ties at average rank; a date whose scores or targets are
    all tied scores 0 and counts; a date with fewer than MIN_NAMES_FOR_IC names is left out.
    """
    d = df[["date", score, target]].dropna()
    if d.empty:
        return pd.Series(dtype=float, name="ic"), 0
    groups = DateGroups.of(d["date"].to_numpy())
    daily = daily_ic_of(groups, d[score].to_numpy(float), d[target].to_numpy(float), method)
    keep = np.isfinite(daily.ic)
    ic = pd.Series(daily.ic[keep], index=pd.Index(groups.keys[keep], name="date"), name="ic")
    return ic, daily.n_tied


def daily_ic(
    df: pd.DataFrame, score: str = "score", target: str = "y_ret", method: str = "spearman"
) -> pd.Series:
    """Per-date IC (see ic_by_date for how ties and thin dates count)."""
    return ic_by_date(df, score, target, method)[0]


def daily_rank_ic(df: pd.DataFrame, score: str = "score", target: str = "y_ret") -> pd.Series:
    """Spearman correlation between score and forward return, per date (see ic_by_date)."""
    return daily_ic(df, score, target, "spearman")


def icir(ic: pd.Series, periods: int = 252) -> float:
    """Mean IC over its standard deviation (per period, not annualised; annualise with sqrt(periods))."""
    del periods
    return float(ic.mean() / ic.std(ddof=1)) if len(ic) > 2 and ic.std(ddof=1) > 0 else float("nan")


# ------------------------------------------------------------------------------------------------ tables
def summarize(df: pd.DataFrame) -> dict[str, float | int]:
    """Metrics of one model on one set of rows (rank IC dates and all-tied dates counted: see ic_by_date)."""
    ic, n_tied = ic_by_date(df)
    out = {
        "n": len(df),
        "dir_acc": direction_accuracy(df["up"].to_numpy(float), df["y_ret"].to_numpy(float)),
        "up_rate": float(np.mean(df["y_ret"].dropna() > 0)) if df["y_ret"].notna().any() else float("nan"),
        "mse": mse(df["pred"].to_numpy(float), df["y"].to_numpy(float)),
        "mae": mae(df["pred"].to_numpy(float), df["y"].to_numpy(float)),
        "r2": r2(df["pred"].to_numpy(float), df["y"].to_numpy(float)),
        "rank_ic": float(ic.mean()) if len(ic) else float("nan"),
        "rank_ic_dates": len(ic),
        "rank_ic_tied_dates": n_tied,
        "icir": icir(ic),
        "rank_ic_t": float(ic.mean() / ic.std(ddof=1) * np.sqrt(len(ic)))
        if len(ic) > 2 and ic.std() > 0
        else float("nan"),
    }
    return out


def metrics_table(oof: pd.DataFrame, by: tuple[str, ...] = ("fold", "model")) -> pd.DataFrame:
    rows = [
        dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)) | summarize(g)
        for key, g in oof.groupby(list(by), sort=True)
    ]
    return pd.DataFrame(rows)


def binomial_p_value(successes: int, n: int, p: float = 0.5) -> float:
    """One-sided p-value that accuracy exceeds p (iid; see stats.clustered_mean_ci for the honest interval)."""
    if n == 0:
        return float("nan")
    return float(stats.binomtest(successes, n, p, alternative="greater").pvalue)
