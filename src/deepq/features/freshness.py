"""Freshness of the reference series a run's features read, and the gate that refuses stale ones.

A stock's own features read only its own bars. Others read a reference series: the market (SPY), the
stock's sector ETF (`FeatureSpec.reads`), or an as-of joined source (`features.sources`). Each is carried
forward at most `freshness.fill_limit_sessions` sessions past its last value (a source may set its own
`max_age_sessions`), then it is NaN and the windows that need it are invalid. So a series that stops never
yields flat features; the gate says so before a run starts instead of letting it train or serve on NaN:

- lagging within the limit (the shared data's SPY ends 2024-06-21, five sessions before the stocks): a
  warning, and the run's summary lists it;
- lagging past the limit: `StaleInputError` naming the series, the features that read it and the dates,
  unless `freshness.allow_stale=true` (`--allow-stale-inputs` for predict and serve), after which the run's summary
  and report say which stale series were accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from deepq.data.panel import DataError, Panel
from deepq.features.library._helpers import MARKET_SYMBOL, SECTOR_ETF, reference_close
from deepq.features.registry import FeatureSpec

log = logging.getLogger(__name__)


class StaleInputError(DataError):
    """A reference series the configured features need stopped more than the fill limit ago."""


@dataclass(frozen=True)
class SeriesLag:
    series: str  # a symbol (SPY, XLK) or "source:<name>"
    last: str | None  # its last bar / last usable publication; None: none in the panel's span
    lag_sessions: int  # panel sessions after `last`, through the panel's last session
    limit: int  # sessions it may be carried forward
    features: tuple[str, ...]  # the run's features that read it
    panel_last: str
    nan_from: str | None = None  # first session its readers are NaN (carried forward no further)

    @property
    def stale(self) -> bool:
        return self.lag_sessions > self.limit

    def describe(self) -> str:
        since = f"last value {self.last}" if self.last else "no value in the panel's span"
        state = "past" if self.stale else "within"
        head = (
            f"{self.series}: {since}, {self.lag_sessions} session(s) before the panel's last session "
            f"{self.panel_last} ({state} the fill limit of {self.limit})"
        )
        feats = ", ".join(self.features[:8]) + (" ..." if len(self.features) > 8 else "")
        return f"{head}; read by {feats}"

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "features": list(self.features), "stale": self.stale}


def _lag(panel: Panel, last_row: int | None, series: str, limit: int, features: Sequence[str]) -> SeriesLag:
    T = panel.shape[0]
    last = None if last_row is None else str(panel.dates[last_row])
    lag = T if last_row is None else T - 1 - last_row
    first_nan = 0 if last_row is None else last_row + limit + 1
    nan_from = str(panel.dates[first_nan]) if first_nan < T else None
    return SeriesLag(series, last, int(lag), int(limit), tuple(features), str(panel.dates[-1]), nan_from)


def _readers(panel: Panel, specs: Sequence[FeatureSpec]) -> dict[str, list[str]]:
    """Reference symbol -> the specs' features that read it (SPY for "market"; the stocks' sector ETFs and
    SPY, their fallback, for "sector"); symbols not in the panel are left out (documented fallbacks)."""
    readers: dict[str, list[str]] = {}
    for spec in specs:
        if "market" in spec.reads or "sector" in spec.reads:
            readers.setdefault(MARKET_SYMBOL, []).append(spec.name)
        if "sector" in spec.reads:
            for etf in sorted({SECTOR_ETF.get(panel.sectors.get(s, ""), "") for s in panel.symbols} - {""}):
                readers.setdefault(etf, []).append(spec.name)
    return {sym: feats for sym, feats in readers.items() if sym in panel.symbols}


def reference_gaps(panel: Panel, specs: Sequence[FeatureSpec]) -> np.ndarray:
    """bool [T, N]: cells whose features read a reference series that has no value there, after its first
    bar (a gap or a stop past the fill limit). Those samples are invalid: a NaN input must not reach a model
    as the normaliser's mean."""
    out = np.zeros(panel.shape, dtype=bool)
    stocks = panel.mask(("stock",))
    for sym in _readers(panel, specs):
        close = reference_close(panel, sym)
        seen = np.flatnonzero(np.isfinite(close))
        if not len(seen):
            continue
        gap = ~np.isfinite(close)
        gap[: seen[0]] = False  # before its first bar: the documented fallbacks apply
        if sym == MARKET_SYMBOL:
            out |= gap[:, None] & stocks[None, :]
        else:
            cols = np.array([SECTOR_ETF.get(panel.sectors.get(s, "")) == sym for s in panel.symbols])
            out |= gap[:, None] & (cols & stocks)[None, :]
    return out


def reference_lags(panel: Panel, specs: Sequence[FeatureSpec]) -> list[SeriesLag]:
    """The lag of every reference symbol the specs read (SPY for "market"; the stocks' sector ETFs and SPY,
    their fallback, for "sector"), in the panel's sessions."""
    out = []
    close = panel["close"]
    for sym, feats in _readers(panel, specs).items():
        rows = np.flatnonzero(np.isfinite(close[:, panel.symbol_index(sym)]))
        out.append(_lag(panel, int(rows[-1]) if len(rows) else None, sym, panel.fill_limit, feats))
    return out


def source_lag(
    panel: Panel, name: str, events: pd.DataFrame, limit: int, columns: Sequence[str]
) -> SeriesLag:
    """The lag of a source's newest usable event (over all its symbols) behind the panel's last session."""
    T = panel.shape[0]
    available = events["available"] if len(events) else pd.Series([], dtype="datetime64[ns]")
    days = pd.to_datetime(available).values.astype("datetime64[D]")
    # the session each event is first usable on (`sources.base.session_rows`), kept inside the panel
    rows = np.searchsorted(panel.dates.astype("datetime64[D]"), days, side="left")
    rows = rows[rows < T]
    return _lag(panel, int(rows.max()) if len(rows) else None, f"source:{name}", limit, columns)


def gate(lags: Sequence[SeriesLag], allow_stale: bool = False) -> list[SeriesLag]:
    """Warn about every lagging series; raise `StaleInputError` for one past its limit unless
    `allow_stale`. Returns the lagging series (stale or not) for the run's summary."""
    lagging = [lag for lag in lags if lag.lag_sessions > 0]
    stale = [lag for lag in lagging if lag.stale]
    for lag in lagging:
        if not lag.stale:
            log.warning("reference series lags: %s", lag.describe())
    if stale and not allow_stale:
        lines = "\n".join(
            f"  - {lag.describe()}; NaN from {lag.nan_from} to {lag.panel_last}" for lag in stale
        )
        raise StaleInputError(
            f"stale input series past the fill limit:\n{lines}\n"
            "Update the data (`deepq data update --symbols ...`), or accept it with freshness.allow_stale=true "
            "(deepq predict / deepq serve: --allow-stale-inputs); the run's summary and report then list it."
        )
    for lag in stale:
        log.warning("stale input accepted (freshness.allow_stale): %s", lag.describe())
    return lagging
