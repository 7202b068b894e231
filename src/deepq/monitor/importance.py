"""Feature importance over time: permutation importance for any model, native importances when available.

Permutation importance shuffles one feature's whole window across samples (keeping its time structure
within a window) and measures how much the rank IC of the predictions against realised returns falls and
the MSE rises. Native: LightGBM's gain (`feature_importance('gain')`), and any model exposing
`variable_importance()` (TFT variable-selection weights).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

Run = Callable[[torch.Tensor], np.ndarray]  # [B, L, F] -> [B, K]; column 0 is the prediction


def _rank_ic(pred: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(pred) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    return float(pd.Series(pred[ok]).rank().corr(pd.Series(y[ok]).rank()))


def permutation_importance(
    run: Run, x: torch.Tensor, y: np.ndarray, names: Sequence[str], n_repeats: int = 3, seed: int = 0
) -> pd.DataFrame:
    """Per feature: mean drop in rank IC and rise in MSE when that feature is permuted across samples."""
    rng = np.random.default_rng(seed)
    base = run(x)[:, 0].astype(np.float64)
    base_ic, base_mse = _rank_ic(base, y), float(np.nanmean((base - y) ** 2))
    rows = []
    for j, name in enumerate(names):
        d_ic, d_mse = [], []
        for _ in range(n_repeats):
            xp = x.clone()
            xp[:, :, j] = x[torch.from_numpy(rng.permutation(len(x))), :, j]
            p = run(xp)[:, 0].astype(np.float64)
            d_ic.append(base_ic - _rank_ic(p, y))
            d_mse.append(float(np.nanmean((p - y) ** 2)) - base_mse)
        rows.append({"feature": name, "ic_drop": float(np.mean(d_ic)), "mse_rise": float(np.mean(d_mse))})
    return pd.DataFrame(rows).sort_values("ic_drop", ascending=False, ignore_index=True)


def native_importance(model: Any, names: Sequence[str]) -> pd.Series | None:
    """LightGBM gain or a model's own `variable_importance()`; None when the model has neither."""
    booster = getattr(model, "booster_", None) or (model if hasattr(model, "feature_importance") else None)
    if booster is not None and hasattr(booster, "feature_importance"):
        gain = np.asarray(booster.feature_importance(importance_type="gain"), dtype=np.float64)
        if len(gain) == len(names):
            return pd.Series(gain / max(gain.sum(), 1e-12), index=list(names), name="gain")
    if callable(getattr(model, "variable_importance", None)):
        weights = np.asarray(model.variable_importance(), dtype=np.float64)
        if len(weights) == len(names):
            return pd.Series(weights, index=list(names), name="variable_weight")
    return None
