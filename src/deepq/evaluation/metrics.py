"""Forecast and cross-sectional metrics over out-of-fold predictions.

The OOF frame has one row per (model, date, symbol): `y` the task label, `y_ret` the forward return of the
same holding period, `pred` the forecast on the label's scale (NaN if the model has none), `score` a ranking
score (NaN if none) and `up` the predicted direction (1/0, NaN if none). Direction accuracy is computed on
exactly the rows a model scored, so always-up beside it is a fair comparison.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

MIN_NAMES_FOR_IC = 5


def direction_accuracy(up: np.ndarray, y_ret: np.ndarray) -> float:
    ok = np.isfinite(up) & np.isfinite(y_ret)
    return float(np.mean((up[ok] > 0.5) == (y_ret[ok] > 0))) if ok.any() else float("nan")


def mse(pred: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(pred) & np.isfinite(y)
    return float(np.mean((pred[ok] - y[ok]) ** 2)) if ok.any() else float("nan")


def daily_rank_ic(df: pd.DataFrame, score: str = "score", target: str = "y_ret") -> pd.Series:
    """Spearman correlation between score and forward return, per date (dates with too few names dropped)."""
    d = df[["date", score, target]].dropna()
    if d.empty:
        return pd.Series(dtype=float)
    ranks = d.groupby("date")[[score, target]].rank()
    ranks["date"] = d["date"]
    counts = ranks.groupby("date")[score].transform("size")
    ranks = ranks[counts >= MIN_NAMES_FOR_IC]
    if ranks.empty:
        return pd.Series(dtype=float)

    def corr(g: pd.DataFrame) -> float:
        a, b = g[score].to_numpy(), g[target].to_numpy()
        if a.std() == 0 or b.std() == 0:
            return np.nan
        return float(np.corrcoef(a, b)[0, 1])

    return ranks.groupby("date")[[score, target]].apply(corr).dropna()


def summarize(df: pd.DataFrame) -> dict[str, float | int]:
    """Metrics of one model on one set of rows."""
    ic = daily_rank_ic(df)
    out = {
        "n": len(df),
        "dir_acc": direction_accuracy(df["up"].to_numpy(float), df["y_ret"].to_numpy(float)),
        "up_rate": float(np.mean(df["y_ret"].dropna() > 0)) if df["y_ret"].notna().any() else float("nan"),
        "mse": mse(df["pred"].to_numpy(float), df["y"].to_numpy(float)),
        "rank_ic": float(ic.mean()) if len(ic) else float("nan"),
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
    """One-sided p-value that accuracy exceeds p (iid; clustering by date widens it, see the evaluation issue)."""
    if n == 0:
        return float("nan")
    return float(stats.binomtest(successes, n, p, alternative="greater").pvalue)
