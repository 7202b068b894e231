"""The degeneracy guard: do a model's scores tell the stocks of a date apart?

A return model trained on raw returns with MSE can learn the date's market move and give every stock the
same score; its aggregate metrics can still look plausible (an IC over ties is 0, MSE near the best). Two
figures per model catch it, on the `score` column of the OOF frame (the ranking score of every task: the
return forecast, P(up), the signal score, the log-vol forecast):
- distinct share: per date, distinct scores / scored names; the median over dates (and the share of dates
  whose scores are all tied, and the share with >= 95 % distinct, the cross-sectional issue's per-date bar:
  a median hides a few folds that stopped at a handful of trees);
- dispersion ratio: the cross-sectional std of scores (mean over dates) over the time-series std of the
  daily mean score. A model whose scores move with the market and barely across stocks has a ratio near 0
  even when float noise makes every score distinct.

The old raw-target LightGBM on the full panel had 1 % distinct scores and a ratio of 0.13; the cs_rank one
96 % and 3.0. The default thresholds (50 %, 0.5) sit between the two with a wide margin on each side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepq.dataset.targets import MIN_NAMES

FULLY_DISTINCT = 0.95  # a date whose scores are at least this share distinct tells (nearly) every stock apart


@dataclass(frozen=True)
class DegeneracySpec:
    min_distinct_share: float = 0.5  # median over dates of distinct scores / names
    min_dispersion_ratio: float = 0.5  # cross-sectional std / time-series std of the daily mean

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_distinct_share <= 1.0:
            raise ValueError(
                f"degeneracy.min_distinct_share must be in [0, 1], got {self.min_distinct_share}"
            )
        if self.min_dispersion_ratio < 0:
            raise ValueError(f"degeneracy.min_dispersion_ratio must be >= 0, got {self.min_dispersion_ratio}")


@dataclass(frozen=True)
class Degeneracy:
    """One model's figures; `flagged` when either falls below its threshold (NaN figures never flag)."""

    model: str
    dates: int  # dates with at least MIN_NAMES scored names
    distinct_share: float
    tied_date_share: float
    distinct95_share: float  # dates with >= FULLY_DISTINCT distinct scores (reported; it does not flag)
    cs_std: float
    ts_std: float
    dispersion_ratio: float
    flagged: bool
    reasons: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.model}: " + ("; ".join(self.reasons) if self.reasons else "scores tell stocks apart")

    def row(self) -> dict[str, object]:
        return {
            "model": self.model,
            "dates": self.dates,
            "distinct_share": self.distinct_share,
            "tied_date_share": self.tied_date_share,
            "distinct95_share": self.distinct95_share,
            "cs_std": self.cs_std,
            "ts_std": self.ts_std,
            "dispersion_ratio": self.dispersion_ratio,
            "degenerate": self.flagged,
            "reasons": "; ".join(self.reasons),
        }


def degeneracy(model: str, dates: np.ndarray, score: np.ndarray, spec: DegeneracySpec) -> Degeneracy | None:
    """The guard's figures for one model's (date, score) rows; None when it has no finite score."""
    ok = np.isfinite(np.asarray(score, np.float64))
    if not ok.any():
        return None
    frame = pd.DataFrame({"date": np.asarray(dates)[ok], "score": np.asarray(score, np.float64)[ok]})
    by = frame.groupby("date")["score"]
    per = pd.DataFrame({"n": by.size(), "distinct": by.nunique(), "std": by.std(ddof=0), "mean": by.mean()})
    per = per[per["n"] >= MIN_NAMES]  # fewer names is no cross-section (the rank IC leaves them out too)
    if per.empty:
        return None
    per_date = per["distinct"] / per["n"]
    share = float(per_date.median())
    tied = float((per["distinct"] == 1).mean())
    full = float((per_date >= FULLY_DISTINCT).mean())
    cs, ts = float(per["std"].mean()), float(per["mean"].std(ddof=0))
    # a constant daily mean (a per-stock constant score) has no time-series variation: nothing to flag
    ratio = cs / ts if ts > 0 else (float("inf") if cs > 0 else float("nan"))
    reasons = []
    if share < spec.min_distinct_share:
        reasons.append(
            f"{share:.1%} distinct scores per date (median; minimum {spec.min_distinct_share:.0%}), "
            f"{tied:.1%} of dates all tied"
        )
    if ratio < spec.min_dispersion_ratio:
        reasons.append(
            f"cross-sectional / time-series dispersion {ratio:.3g} (minimum {spec.min_dispersion_ratio:.3g})"
        )
    return Degeneracy(model, len(per), share, tied, full, cs, ts, ratio, bool(reasons), tuple(reasons))


def degeneracy_table(oof: pd.DataFrame, spec: DegeneracySpec | None = None) -> pd.DataFrame:
    """Per model with a score: the guard's figures (the OOF schema of deepq.evaluation.metrics)."""
    spec = spec or DegeneracySpec()
    found = (
        degeneracy(str(m), g["date"].to_numpy(), g["score"].to_numpy(float), spec)
        for m, g in oof.groupby("model", sort=False)
    )
    rows = [d.row() for d in found if d is not None]
    return pd.DataFrame(rows, columns=list(Degeneracy.__dataclass_fields__)[:-2] + ["degenerate", "reasons"])


def flagged_models(table: pd.DataFrame, among: list[str] | None = None) -> pd.DataFrame:
    """The flagged rows, optionally only those of the named models (a run's own model, not its baselines)."""
    if table.empty or "degenerate" not in table:
        return table.iloc[0:0] if len(table.columns) else pd.DataFrame()
    out = table[table["degenerate"].astype(bool)]
    return out[out["model"].isin(among)] if among is not None else out


def warning_text(flagged: pd.DataFrame) -> str:
    """One sentence per flagged model, for the run summary and the report banner."""
    return " ".join(
        f"DEGENERATE {r.model}: its scores barely differ across stocks ({r.reasons})."
        for r in flagged.itertuples(index=False)
    )
