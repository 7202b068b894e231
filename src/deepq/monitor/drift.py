"""Distribution drift against the training reference: PSI and the two-sample KS test.

PSI bins the reference into quantiles (so every bin holds ~1/bins of it) and compares the current share in
each bin: sum (cur - ref) * ln(cur / ref). Rules of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 shifted.
KS p-values become tiny for trivial shifts on large samples, so a feature counts as drifted only when the
p-value is small AND the KS statistic (the largest CDF gap) is material; both thresholds come from config.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

_EPS = 1e-4  # floor on bin shares, so an empty bin costs a finite amount


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if len(ref) < bins or len(cur) == 0:
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    # searchsorted on the inner edges: bin k holds values in (edge[k-1], edge[k]]; ties stay together
    r = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1) / len(ref)
    c = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1) / len(cur)
    r, c = np.maximum(r, _EPS), np.maximum(c, _EPS)
    return float(np.sum((c - r) * np.log(c / r)))


def ks(
    reference: np.ndarray, current: np.ndarray, max_samples: int = 20_000, seed: int = 0
) -> tuple[float, float]:
    """(KS statistic, p-value); large samples are subsampled (the statistic barely moves, the test is O(n log n))."""
    rng = np.random.default_rng(seed)
    out = []
    for a in (reference, current):
        a = np.asarray(a, dtype=np.float64)
        a = a[np.isfinite(a)]
        out.append(rng.choice(a, max_samples, replace=False) if len(a) > max_samples else a)
    if min(len(out[0]), len(out[1])) < 2:
        return float("nan"), float("nan")
    res = stats.ks_2samp(out[0], out[1])
    return float(res.statistic), float(res.pvalue)


def feature_drift(
    reference: np.ndarray,
    current: np.ndarray,
    names: Sequence[str],
    psi_alert: float = 0.25,
    ks_pvalue: float = 1e-3,
    ks_stat: float = 0.1,
    bins: int = 10,
) -> pd.DataFrame:
    """Per feature: PSI, KS statistic and p-value, and whether it drifted. reference [M, F], current [K, F]."""
    if reference.shape[1] != len(names) or current.shape[1] != len(names):
        raise ValueError(
            f"reference {reference.shape} / current {current.shape} do not have {len(names)} features"
        )
    rows = []
    for j, name in enumerate(names):
        p = psi(reference[:, j], current[:, j], bins)
        d, pv = ks(reference[:, j], current[:, j])
        drifted = bool((p > psi_alert) or (pv < ks_pvalue and d > ks_stat))
        rows.append({"feature": name, "psi": p, "ks_stat": d, "ks_pvalue": pv, "drifted": drifted})
    return pd.DataFrame(rows)
