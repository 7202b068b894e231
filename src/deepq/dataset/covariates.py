"""Covariates besides the features: static ids for embeddings and known-future calendar channels.

Calendar channels are known in advance for any session, so a model may read them for the dates after the
decision date (TFT's decoder does). Past the panel's last session (the live edge) the calendar continues on
the exchange's own future sessions (exchange-calendars' XNYS: holidays such as July 4th are skipped, as the
panel skips them), or on weekdays where exchange-calendars cannot answer. Training never reads those dates
(a window whose future passes the edge has no label); serving at the edge does, and builds them with this
same function, so offline and served inputs agree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from deepq.data.calendar import sessions

log = logging.getLogger(__name__)

CALENDAR_CHANNELS = ("day_of_week", "day_of_month", "month_sin", "month_cos")


def extend_sessions(dates: np.ndarray, extra: int, exchange: str | None = "XNYS") -> np.ndarray:
    """The panel's sessions plus the `extra` sessions after its last one: `exchange`'s calendar, or the
    following weekdays when `exchange` is None or exchange-calendars cannot build it."""
    dates = np.asarray(dates, dtype="datetime64[D]")
    if extra <= 0:
        return dates
    nxt = np.busday_offset(dates[-1], np.arange(1, extra + 1), roll="forward").astype("datetime64[D]")
    if exchange:
        first, last = dates[-1] + 1, dates[-1] + 2 * extra + 14  # weekends and holidays: ample room
        try:
            future = sessions(exchange, str(first), str(last))
        except Exception as e:  # noqa: BLE001 - out of the library's range, or not installed: weekdays
            log.warning(
                "no %s calendar after %s (%s): weekdays stand in for sessions", exchange, dates[-1], e
            )
        else:
            if len(future) >= extra:
                nxt = future[:extra]
            else:
                log.warning("%s has %d sessions after %s, %d needed: weekdays stand in", exchange, len(future),
                            dates[-1], extra)  # fmt: skip
    return np.concatenate([dates, nxt])


def calendar_features(dates: np.ndarray) -> np.ndarray:
    """[len(dates), 4] float32 in [-1, 1]: weekday, day of month, month on the unit circle."""
    d = np.asarray(dates, dtype="datetime64[D]")
    weekday = (d.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    month_start = d.astype("datetime64[M]")
    day = (d - month_start.astype("datetime64[D]")).astype("int64")  # 0..30
    month = (month_start.astype("int64") % 12).astype(np.float64)  # 0..11
    angle = 2 * np.pi * month / 12.0
    cols = [
        np.minimum(weekday, 4) / 2.0 - 1.0,
        day / 15.0 - 1.0,
        np.sin(angle),
        np.cos(angle),
    ]
    return np.stack(cols, axis=1).astype(np.float32)


def sector_ids(symbols: Sequence[str], sectors: Mapping[str, str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """[N] int64 sector id per symbol (0 = unknown) and the sector names (index 0 = 'unknown')."""
    names = ("unknown", *sorted({v for v in sectors.values() if v}))
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup.get(sectors.get(s, "") or "unknown", 0) for s in symbols], np.int64), names
