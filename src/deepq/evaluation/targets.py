"""The seed's targets beside what each model measured (with its confidence interval) and the baselines.

A target only counts as met when the measured value clears it; the interval shows whether it would still
clear it at the low end. Targets a run's task cannot measure (signal accuracy needs task=signal, risk R²
needs task=risk) are listed with no value rather than dropped, so the table never hides what is missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# (target, summary or portfolio column, threshold, higher is better, CI columns, task that measures it)
SEED_TARGETS: tuple[tuple[str, str, float, bool, tuple[str, str] | None, str | None], ...] = (
    ("direction accuracy > 65%", "dir_acc", 0.65, True, ("dir_acc_lo", "dir_acc_hi"), None),
    ("signal accuracy > 60%", "signal_acc", 0.60, True, ("signal_acc_lo", "signal_acc_hi"), "signal"),
    ("risk R² (log vol) > 0.5", "r2_log_vol", 0.5, True, None, "risk"),
    ("price R² > 0.3", "price_r2", 0.3, True, None, "returns"),
    ("Sharpe > 1.5 (net)", "sharpe", 1.5, True, ("sharpe_lo", "sharpe_hi"), None),
    ("max drawdown < 20%", "max_drawdown", -0.2, True, None, None),
    ("win rate > 55%", "win_rate", 0.55, True, None, None),
    ("profitable over 10 years", "total_return", 0.0, True, None, None),
)
PORTFOLIO_COLUMNS = {"sharpe", "sharpe_lo", "sharpe_hi", "max_drawdown", "win_rate", "total_return"}


def targets_table(summary: pd.DataFrame, portfolios: pd.DataFrame, primary: str, task: str) -> pd.DataFrame:
    """Long table: one row per (target, model) with value, CI, met; baselines and always-up/random walk too."""
    rows: list[dict[str, Any]] = []
    port = (
        portfolios[portfolios["portfolio"] == primary].set_index("model")
        if len(portfolios)
        else pd.DataFrame()
    )
    summ = summary.set_index("model") if len(summary) else pd.DataFrame()
    for name, col, threshold, higher, ci, needs in SEED_TARGETS:
        src = port if col in PORTFOLIO_COLUMNS else summ
        if needs is not None and needs != task:
            rows.append(
                {"target": name, "model": "-", "value": np.nan, "met": False, "note": f"needs task={needs}"}
            )
            continue
        for model in summ.index:
            if col not in src.columns or model not in src.index or not np.isfinite(src.loc[model, col]):
                continue
            value = float(src.loc[model, col])
            lo, hi = (float(src.loc[model, ci[0]]), float(src.loc[model, ci[1]])) if ci else (np.nan, np.nan)
            note = ""
            if col == "total_return":
                years = float(src.loc[model, "years"])
                met = bool(src.loc[model, "profitable_10y"])
                note = f"over {years:.1f} years of test blocks"
            else:
                met = value > threshold if higher else value < threshold
            if col in PORTFOLIO_COLUMNS and col != "total_return":
                note = f"portfolio {primary}"
            rows.append(
                {
                    "target": name,
                    "model": str(model),
                    "value": value,
                    "lo": lo,
                    "hi": hi,
                    "met": bool(met),
                    "note": note,
                }
            )
        if col == "dir_acc" and "always_up_acc" in summ.columns and summ["always_up_acc"].notna().any():
            rows.append(
                {
                    "target": name,
                    "model": "always-up (same rows)",
                    "value": float(summ["always_up_acc"].max()),
                    "met": bool(summ["always_up_acc"].max() > threshold),
                    "note": "baseline",
                }
            )
        if col == "price_r2" and "price_r2_rw" in summ.columns and summ["price_r2_rw"].notna().any():
            rows.append(
                {
                    "target": name,
                    "model": "random walk",
                    "value": float(summ["price_r2_rw"].median()),
                    "met": bool(summ["price_r2_rw"].median() > threshold),
                    "note": "baseline: exit price = entry price",
                }
            )
    return pd.DataFrame(rows, columns=["target", "model", "value", "lo", "hi", "met", "note"])
