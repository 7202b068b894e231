"""Corporate actions: backward split- and dividend-adjustment of raw prices.

The adjusted price of day d is the raw price times the product, over every event with ex-date e > d, of

    m_e = (1 - dividend_e / close_{e-1}) / split_e

(`close_{e-1}` is the raw close of the session before the ex-date; `split_e` is new shares per old share, so a
2-for-1 split halves every earlier price). This is the CRSP/Yahoo/Alpha Vantage convention: the latest prices
are the traded ones and history is scaled down, so returns across an event equal total returns. Volumes are
scaled the other way by splits only. Because the factors depend on every later event, a new split or dividend
restates the whole history: the cache's incremental update detects that and refetches (see update.py).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from deepq.data.panel import DataError

DividendMethod = Literal["prev_close", "ex_close"]


def factors(
    close: np.ndarray,
    dividend: np.ndarray,
    split: np.ndarray,
    group: np.ndarray | None = None,
    method: DividendMethod = "prev_close",
    invalid: str = "raise",
) -> tuple[np.ndarray, np.ndarray]:
    """(price factor, volume factor) per row; rows sorted by date within each `group` (symbol) value.

    `method` is how a dividend scales earlier prices: "prev_close" (CRSP, Yahoo) 1 - D / close_{e-1};
    "ex_close" (Alpha Vantage) close_e / (close_e + D). A dividend at least as large as the previous close
    cannot be a cash dividend (vendors book spin-offs that way, e.g. Alpha Vantage's ABT 2013-01-02): with
    "prev_close", `invalid="raise"` raises DataError naming the row, `invalid="ignore"` leaves it out.
    """
    close = np.asarray(close, dtype=np.float64)
    n = len(close)
    group = np.zeros(n, dtype=np.int64) if group is None else np.asarray(group)
    starts = np.r_[True, group[1:] != group[:-1]] if n else np.zeros(0, bool)
    dividend = np.nan_to_num(np.asarray(dividend, dtype=np.float64), nan=0.0)
    split = np.asarray(split, dtype=np.float64)
    split = np.where(np.isfinite(split) & (split > 0), split, 1.0)
    prev_close = np.r_[np.nan, close[:-1]]
    prev_close[starts] = np.nan
    has_div = (dividend != 0) & np.isfinite(prev_close)
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "prev_close":
            div_factor = np.where(has_div, 1.0 - dividend / prev_close, 1.0)
        elif method == "ex_close":
            div_factor = np.where(has_div, close / (close + dividend), 1.0)
        else:
            raise ValueError(f"dividend method must be 'prev_close' or 'ex_close', got {method!r}")
    bad = ~(div_factor > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        if invalid == "raise":
            raise DataError(
                f"dividend {dividend[i]} at row {i} is at least the previous close {prev_close[i]}: "
                "cannot adjust (a spin-off booked as a dividend, or a unit error?)"
            )
        div_factor = np.where(bad, 1.0, div_factor)
    # factor_d = prod_{e > d, same group} m_e = exp(group total - inclusive cumsum), with m_e = f_e / split_e
    return _reverse_exclusive_prod(np.log(div_factor / split), starts), _reverse_exclusive_prod(
        np.log(split), starts
    )


def _reverse_exclusive_prod(log_m: np.ndarray, starts: np.ndarray) -> np.ndarray:
    if len(log_m) == 0:
        return np.ones(0)
    csum = np.cumsum(log_m)
    gid = np.cumsum(starts) - 1
    ends = np.r_[np.flatnonzero(starts)[1:], len(log_m)] - 1
    total = csum[ends][gid]
    return np.exp(total - csum)


def adjust(
    frame: pd.DataFrame, method: DividendMethod = "prev_close", invalid: str = "raise"
) -> pd.DataFrame:
    """Backward-adjust raw OHLCV using the frame's `dividend` and `split` columns, per symbol.

    Returns a copy sorted by symbol, date with adjusted open/high/low/close, split-adjusted volume, and the
    raw close kept as `raw_close`.
    """
    g = frame.sort_values(["symbol", "date"]).reset_index(drop=True)
    sym = g["symbol"].to_numpy()
    div = g["dividend"].to_numpy() if "dividend" in g.columns else np.zeros(len(g))
    spl = g["split"].to_numpy() if "split" in g.columns else np.ones(len(g))
    try:
        pf, vf = factors(g["close"].to_numpy(), div, spl, group=sym, method=method, invalid=invalid)
    except DataError as e:
        row = int(str(e).split(" at row ")[1].split()[0])
        raise DataError(
            f"symbol {sym[row]}, field 'dividend' on {pd.Timestamp(g['date'].iloc[row]):%Y-%m-%d}: {e}"
        ) from None
    g["raw_close"] = g["close"]
    for col in ("open", "high", "low", "close"):
        g[col] = g[col].to_numpy(dtype=np.float64) * pf
    g["volume"] = g["volume"].to_numpy(dtype=np.float64) * vf
    return g


def attach_actions(raw: pd.DataFrame, actions: pd.DataFrame) -> pd.DataFrame:
    """Put an events table (`symbol, date, action in {dividend, split}, value`) onto raw rows as columns.

    An event on a date with no raw row moves to the next row of that symbol (the next session it traded).
    """
    raw = raw.sort_values(["symbol", "date"]).reset_index(drop=True)
    raw["date"] = pd.to_datetime(raw["date"])
    raw["dividend"] = 0.0
    raw["split"] = 1.0
    if actions.empty:
        return raw
    act = actions.copy()
    act["date"] = pd.to_datetime(act["date"])
    unknown = sorted(set(act["action"]) - {"dividend", "split"})
    if unknown:
        raise DataError(f"actions: unknown action type(s) {unknown}; expected 'dividend' or 'split'")
    raw["_row"] = np.arange(len(raw))
    act = act.sort_values("date")
    hit = pd.merge_asof(
        act, raw[["date", "symbol", "_row"]].sort_values("date"), on="date", by="symbol", direction="forward"
    ).dropna(subset=["_row"])
    rows = hit["_row"].astype(int)
    is_div = (hit["action"] == "dividend").to_numpy()
    div = hit.loc[is_div, "value"].groupby(rows[is_div]).sum()
    spl = hit.loc[~is_div, "value"].groupby(rows[~is_div]).prod()
    raw.loc[div.index, "dividend"] = div.to_numpy()
    raw.loc[spl.index, "split"] = spl.to_numpy()
    raw = raw.drop(columns="_row")
    return raw


def compare_adjusted(ours: pd.Series, vendor: pd.Series, symbols: pd.Series) -> pd.DataFrame:
    """Per symbol: median and worst relative difference |ours / vendor - 1| (rows where both exist)."""
    rel = (ours / vendor - 1.0).abs()
    ok = np.isfinite(rel)
    df = pd.DataFrame({"symbol": symbols[ok].to_numpy(), "rel": rel[ok].to_numpy()})
    g = df.groupby("symbol")["rel"]
    return pd.DataFrame({"median_rel_diff": g.median(), "worst_rel_diff": g.max(), "rows": g.size()})
