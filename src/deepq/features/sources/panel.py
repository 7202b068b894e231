"""Source events -> [T, N] panel features, each usable at a session's close only once published."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from deepq.data.panel import Panel
from deepq.features import ops
from deepq.features.freshness import SeriesLag, source_lag
from deepq.features.sources.base import (
    FeatureSource,
    events_on_sessions,
    last_value_on_sessions,
    max_age,
)


def _since_last_event(panel: Panel, events: pd.DataFrame) -> np.ndarray:
    """Sessions since each symbol's last usable event (NaN before the first)."""
    hit = events_on_sessions(panel, events.assign(_one=1.0), "_one") > 0
    T = panel.shape[0]
    idx = np.where(hit, np.arange(T)[:, None], np.nan)
    last = pd.DataFrame(idx).ffill().to_numpy()
    return np.arange(T)[:, None] - last


def source_features(panel: Panel, sources: Sequence[FeatureSource]) -> dict[str, np.ndarray]:
    """Named [T, N] features from the given sources (macro series broadcast to every symbol)."""
    symbols = list(panel.symbols)
    out: dict[str, np.ndarray] = {}
    for src in sources:
        out.update(source_columns(panel, src, src.events(symbols)))
    return out


def source_columns(panel: Panel, src: FeatureSource, ev: pd.DataFrame) -> dict[str, np.ndarray]:
    """One source's named [T, N] features from its events; held values carried `max_age` sessions at most."""
    out: dict[str, np.ndarray] = {}
    age = max_age(src, panel)
    if src.name == "earnings":
        out["eps_surprise_last"] = last_value_on_sessions(panel, ev, "eps_surprise_pct", age) / 100.0
        out["days_since_earnings"] = _since_last_event(panel, ev)
    elif src.name == "analyst_ratings":
        daily = events_on_sessions(panel, ev, "rating_change")
        out["rating_net_63"] = ops.frame(daily).rolling(63, min_periods=1).sum().to_numpy()
    elif src.name == "insider_transactions":
        daily = events_on_sessions(panel, ev, "insider_net_value")
        net = ops.frame(daily).rolling(126, min_periods=1).sum().to_numpy()
        out["insider_net_126"] = np.sign(net) * np.log1p(np.abs(net))
    elif src.name == "news_sentiment":
        w = ops.frame(events_on_sessions(panel, ev, "weight")).rolling(5, min_periods=1).sum().to_numpy()
        ws = ops.frame(events_on_sessions(panel, ev, "weighted_sentiment")).rolling(5, min_periods=1).sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            out["news_sentiment_5"] = np.where(w > 0, ws.to_numpy() / w, np.nan)
        out["news_count_5"] = (
            ops.frame(events_on_sessions(panel, ev, "count")).rolling(5, min_periods=1).sum().to_numpy()
        )
    elif src.name == "options_flow":
        for c in ("put_call_volume", "put_call_oi", "iv_30"):
            out[c] = last_value_on_sessions(panel, ev, c, age)
    else:  # macro and any other series: the latest published value of each value column
        for c in ev.columns:
            if c not in ("symbol", "available", "observation_date") and pd.api.types.is_numeric_dtype(ev[c]):
                out[f"{src.name}_{c}"] = last_value_on_sessions(panel, ev.dropna(subset=[c]), c, age)
    return out


def append_source_features(
    panel: Panel,
    features: np.ndarray,
    names: tuple[str, ...],
    sources: Sequence[FeatureSource],
) -> tuple[np.ndarray, tuple[str, ...], list[SeriesLag]]:
    """The [T, N, F] feature array and its names with every source's as-of-joined columns appended
    (float32, NaN where nothing was published yet), and each source's lag behind the panel's last session
    (for the freshness gate). No sources: the inputs unchanged.

    A source column whose name is already a feature is an error (it would shadow it silently)."""
    extra: dict[str, np.ndarray] = {}
    lags = []
    for src in sources:
        ev = src.events(list(panel.symbols))
        cols = source_columns(panel, src, ev)
        extra.update(cols)
        lags.append(source_lag(panel, src.name, ev, max_age(src, panel), list(cols)))
    clash = sorted(set(extra) & set(names))
    if clash:
        raise ValueError(f"source feature(s) {clash} clash with registered features of the same name")
    if not extra:
        return features, names, lags
    block = np.stack([np.asarray(v, dtype=np.float32) for v in extra.values()], axis=2)
    block[~np.isfinite(block)] = np.nan
    return np.concatenate([features, block], axis=2), (*names, *extra), lags
