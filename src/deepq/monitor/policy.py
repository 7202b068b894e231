"""Thresholds, alerts and the retraining trigger.

`assess` turns drift and performance tables into alerts; `check_and_retrain` calls the retrain function
(supplied by the task: train on the latest window and register a candidate) when an alert says so. The
monitor never promotes: a retrained version is a candidate until someone runs `deepq models promote`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Thresholds:
    psi_alert: float = 0.25  # a feature whose PSI exceeds this has drifted
    ks_pvalue: float = 1e-3  # ... or whose KS p-value is below this
    ks_stat: float = 0.1  # ... with a KS statistic at least this large
    max_drifted_share: float = 0.25  # alert when more than this share of features drifted
    prediction_psi_alert: float = 0.25  # alert when the predictions' PSI exceeds this
    min_rolling_ic: float = -0.02  # alert when the latest rolling IC falls below this
    min_rolling_accuracy: float = 0.47  # ... or the latest rolling accuracy below this
    ic_window_days: int = 21
    retrain_on: tuple[str, ...] = ("feature_drift", "prediction_drift", "ic_decay", "accuracy_decay")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> Thresholds:
        known = cls.__dataclass_fields__
        unknown = sorted(set(m) - set(known))
        if unknown:
            raise KeyError(f"unknown monitor threshold(s) {unknown}; known: {sorted(known)}")
        kw = dict(m)
        if "retrain_on" in kw:
            kw["retrain_on"] = tuple(kw["retrain_on"])
        return cls(**kw)


@dataclass(frozen=True)
class Alert:
    kind: str  # feature_drift | prediction_drift | ic_decay | accuracy_decay
    value: float
    threshold: float
    message: str


@dataclass
class Assessment:
    alerts: list[Alert] = field(default_factory=list)
    retrain: bool = False
    retrained: dict[str, Any] | None = None  # what the retrain function returned (the new version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alerts": [asdict(a) for a in self.alerts],
            "retrain": self.retrain,
            "retrained": self.retrained,
        }


def assess(
    drift: pd.DataFrame, prediction_psi: float, performance: pd.DataFrame, th: Thresholds
) -> Assessment:
    alerts = []
    share = float(drift["drifted"].mean()) if len(drift) else 0.0
    if share > th.max_drifted_share:
        worst = drift.sort_values("psi", ascending=False)["feature"].head(5).tolist()
        alerts.append(
            Alert(
                "feature_drift",
                share,
                th.max_drifted_share,
                f"{share:.0%} of features drifted (worst by PSI: {worst})",
            )
        )
    if math.isfinite(prediction_psi) and prediction_psi > th.prediction_psi_alert:
        alerts.append(
            Alert(
                "prediction_drift",
                prediction_psi,
                th.prediction_psi_alert,
                f"prediction PSI {prediction_psi:.3f} against the training reference",
            )
        )
    last = (
        performance.dropna(subset=["rolling_ic"]).tail(1)
        if "rolling_ic" in performance
        else performance.head(0)
    )
    if len(last):
        ic, acc = float(last["rolling_ic"].iloc[0]), float(last["rolling_accuracy"].iloc[0])
        if ic < th.min_rolling_ic:
            alerts.append(
                Alert("ic_decay", ic, th.min_rolling_ic, f"{th.ic_window_days}-session rolling IC {ic:.4f}")
            )
        if acc < th.min_rolling_accuracy:
            alerts.append(
                Alert(
                    "accuracy_decay",
                    acc,
                    th.min_rolling_accuracy,
                    f"{th.ic_window_days}-session rolling accuracy {acc:.3f}",
                )
            )
    return Assessment(alerts, retrain=any(a.kind in th.retrain_on for a in alerts))


def check_and_retrain(assessment: Assessment, retrain: Callable[[], dict[str, Any]] | None) -> Assessment:
    """Run `retrain` (train on the latest window, register a candidate) when the assessment calls for it."""
    if assessment.retrain and retrain is not None:
        assessment.retrained = retrain()
    return assessment
