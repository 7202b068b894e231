"""Quality checks per symbol, the cleaning policy, and the dataset-level report.

Checks (counted per symbol, never silently fixed): duplicate dates, OHLC inconsistency, non-positive prices,
missing sessions inside the symbol's span (and how many the gap policy filled), stale prices (the close
unchanged for `stale_sessions` sessions or more), zero-volume streaks, return outliers that no corporate
action explains (robust z-score of log returns: (r - median) / (1.4826 MAD)), and liquidity (median dollar
volume over the last `liquidity_window` sessions).

Cleaning (explicit, configured, reported):
- OHLC: high/low are widened to contain open and close ("clamp"); violations below `ohlc_rtol` relative are
  float noise of the vendor's adjustment and are counted apart from real ones.
- Thin history: a leading stretch where most sessions have zero volume (a pre-listing or OTC history, e.g.
  AMCR before its 2019 NYSE listing) is cut: everything up to the last zero-volume day at or before the last
  session whose trailing `thin_window` zero-volume share is at least `thin_zero_share`. If fewer than
  `thin_window` rows are left the symbol has no tradable history yet (SW before its July 2024 listing) and is
  dropped whole. Indices are exempt (their volume is often not reported).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from deepq.data.calendar import GapPolicy, align_symbol
from deepq.data.panel import DEFAULT_FILL_LIMIT


@dataclass(frozen=True)
class QualityPolicy:
    ohlc: str = "clamp"  # clamp | none
    ohlc_rtol: float = 1e-6
    thin_zero_share: float = 0.5  # trim a leading history where at least this share of sessions has no volume
    thin_window: int = 63
    stale_sessions: int = 5
    outlier_z: float = 10.0
    outlier_min_abs_return: float = 0.2
    outlier_window: int = 63
    liquidity_window: int = 63
    min_dollar_volume: float = 0.0  # the `liquid` column of the report (0 = every symbol)


def _runs(flag: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in a bool array."""
    if not flag.any():
        return np.zeros(0, dtype=int)
    padded = np.r_[False, flag, False].astype(np.int8)
    d = np.diff(padded)
    return np.flatnonzero(d == -1) - np.flatnonzero(d == 1)


def ohlc_violation(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(relative size of the worst violation per row, any violation per row)."""
    o, h, lo, c = (df[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close"))
    top = np.fmax(o, c)
    bot = np.fmin(o, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        over = np.nan_to_num(np.fmax((top - h) / h, 0.0))
        under = np.nan_to_num(np.fmax((lo - bot) / bot, 0.0))
        inverted = np.nan_to_num(np.fmax((lo - h) / h, 0.0))
    size = np.fmax(np.fmax(over, under), inverted)
    return size, size > 0


def clean_symbol(df: pd.DataFrame, policy: QualityPolicy) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One symbol's rows (sorted by date) cleaned by the policy, and what was done."""
    log: dict[str, Any] = {"ohlc_clamped": 0, "thin_rows_dropped": 0}
    if df.empty:
        return df, log
    df = df.copy()
    is_index = "asset_type" in df.columns and (df["asset_type"] == "index").all()  # indices report no volume
    if policy.thin_zero_share > 0 and len(df) >= policy.thin_window and not is_index:
        zero = (df["volume"].to_numpy() == 0) & ~df.get("filled", pd.Series(False, index=df.index)).to_numpy()
        share = (
            pd.Series(zero.astype(float)).rolling(policy.thin_window, min_periods=policy.thin_window).mean()
        )
        thin = np.flatnonzero(share.to_numpy() >= policy.thin_zero_share)
        if len(thin):
            last_zero = np.flatnonzero(zero[: thin[-1] + 1])[-1]
            log["thin_rows_dropped"] = int(last_zero + 1)
            log["thin_until"] = str(pd.Timestamp(df["date"].iloc[last_zero]).date())
            df = df.iloc[last_zero + 1 :].copy()
            if len(df) < policy.thin_window:  # a stub after a thin history: nothing tradable yet
                log["thin_rows_dropped"] += len(df)
                df = df.iloc[:0].copy()
    if policy.ohlc == "clamp" and len(df):
        _, bad = ohlc_violation(df)
        if bad.any():
            o, c = df["open"].to_numpy(), df["close"].to_numpy()
            df["high"] = np.fmax(df["high"].to_numpy(), np.fmax(o, c))
            df["low"] = np.fmin(df["low"].to_numpy(), np.fmin(o, c))
            log["ohlc_clamped"] = int(bad.sum())
    return df.reset_index(drop=True), log


def check_symbol(
    df: pd.DataFrame,
    session_dates: np.ndarray | None,
    policy: QualityPolicy,
    action_dates: Iterable[pd.Timestamp] = (),
    fill_limit: int = DEFAULT_FILL_LIMIT,
) -> dict[str, Any]:
    """The quality numbers of one symbol's rows (raw or cleaned; need not be valid). `fill_limit`: gaps
    longer than this many sessions are listed (a reference series is carried no further)."""
    sym = str(df["symbol"].iloc[0]) if len(df) else ""
    out: dict[str, Any] = {"symbol": sym, "rows": len(df)}
    if df.empty:
        return out
    df = df.sort_values("date")
    dates = pd.DatetimeIndex(df["date"])
    filled = df["filled"].to_numpy(dtype=bool) if "filled" in df.columns else np.zeros(len(df), bool)
    out["first"], out["last"] = str(dates[0].date()), str(dates[-1].date())
    out["duplicate_dates"] = int(dates.duplicated().sum())
    size, bad = ohlc_violation(df)
    out["ohlc_violations"] = int((size > policy.ohlc_rtol).sum())
    out["ohlc_noise"] = int((bad & (size <= policy.ohlc_rtol)).sum())
    prices = df[["open", "high", "low", "close"]].to_numpy(dtype=np.float64)
    out["non_positive"] = int((np.nan_to_num(prices, nan=1.0) <= 0).any(axis=1).sum())
    out["nan_close"] = int(df["close"].isna().sum())
    out["nan_ohl"] = int(df[["open", "high", "low"]].isna().any(axis=1).sum())
    if session_dates is not None and len(session_dates):
        cal = pd.DatetimeIndex(np.asarray(session_dates).astype("datetime64[ns]"))
        span = cal[(cal >= dates[0]) & (cal <= dates[-1])]
        present = dates[~filled]
        out["span_sessions"] = len(span)
        out["missing_sessions"] = int(len(span.difference(present)))
        out["filled_sessions"] = int(filled.sum())
        still_missing = len(span.difference(dates))
        out["missing_after_fill"] = int(still_missing)
        hole = ~span.isin(dates)
        runs = _runs(np.asarray(hole))
        out["longest_gap"] = int(runs.max()) if len(runs) else 0
        starts = np.flatnonzero(np.diff(np.r_[0, hole.astype(np.int8)]) == 1)
        out["gaps_over_fill_limit"] = [
            (str(span[a].date()), str(span[a + n - 1].date()), int(n))
            for a, n in zip(starts, runs, strict=True)
            if n > fill_limit
        ][:10]
        out["off_calendar"] = int((~dates.isin(cal) & (dates >= cal[0]) & (dates <= cal[-1])).sum())
    close = df["close"].to_numpy(dtype=np.float64)
    same = np.r_[False, close[1:] == close[:-1]] & ~filled
    stale = _runs(same) + 1  # a run of k repeats is k+1 equal closes
    out["stale_runs"] = int((stale >= policy.stale_sessions).sum())
    out["max_stale"] = int(stale.max()) if len(stale) else 1
    zero = (df["volume"].to_numpy() == 0) & ~filled
    zr = _runs(zero)
    out["zero_volume_rows"] = int(zero.sum())
    out["max_zero_volume_streak"] = int(zr.max()) if len(zr) else 0
    with np.errstate(divide="ignore", invalid="ignore"):
        r = pd.Series(np.diff(np.log(close)))
    outliers: list[str] = []
    if r.notna().sum() > 20:
        # robust z against the returns around it: a crisis raises the scale, so only moves out of line with
        # their own period are flagged (a flag to review: most are real news, a few are bad ticks)
        w = policy.outlier_window
        med = r.rolling(w, center=True, min_periods=20).median()
        mad = 1.4826 * (r - med).abs().rolling(w, center=True, min_periods=20).median()
        z = ((r - med) / mad.replace(0.0, np.nan)).to_numpy()
        rv = r.to_numpy()
        with np.errstate(invalid="ignore"):
            hit = (np.abs(z) > policy.outlier_z) & (np.abs(rv) > policy.outlier_min_abs_return)
        explained = set(pd.DatetimeIndex(list(action_dates)))
        if "split" in df.columns:
            explained |= set(dates[(df["split"].to_numpy() != 1) | (df["dividend"].to_numpy() != 0)])
        outliers = [str(dates[i + 1].date()) for i in np.flatnonzero(hit) if dates[i + 1] not in explained]
    out["return_outliers"] = len(outliers)
    out["outlier_dates"] = outliers[:10]
    dv = close * df["volume"].to_numpy(dtype=np.float64)
    tail = dv[~filled][-policy.liquidity_window :]
    out["median_dollar_volume"] = float(np.nanmedian(tail)) if len(tail) else float("nan")
    out["liquid"] = bool(out["median_dollar_volume"] >= policy.min_dollar_volume)
    return out


def prepare_symbol(
    df: pd.DataFrame,
    session_dates: np.ndarray | None,
    quality: QualityPolicy,
    gaps: GapPolicy,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Clean, then align to the calendar with the gap policy: the rows that go into the cache."""
    cleaned, log = clean_symbol(df, quality)
    if session_dates is not None and len(cleaned):
        al = align_symbol(cleaned, session_dates, gaps)
        cleaned = al.frame
        log["off_calendar_dropped"] = len(al.off_calendar)
        log["filled"] = len(al.filled)
        log["long_gaps"] = [(str(a.date()), str(b.date()), n) for a, b, n in al.long_gaps]
    return cleaned, log


def quality_report(
    frames: Iterable[pd.DataFrame],
    session_dates: np.ndarray | None,
    policy: QualityPolicy,
    actions: pd.DataFrame | None = None,
    fill_limit: int = DEFAULT_FILL_LIMIT,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-symbol table and a summary (the missing-data share is over every symbol's own span).

    Freshness: `lag_sessions` is how many sessions of the calendar a symbol's last bar is before the
    newest last bar of the report (the panel's last session); `summary["lagging"]` lists every such series,
    worst first, and `summary["stale"]` the ones past `fill_limit` (features reading them turn NaN)."""
    act_dates: dict[str, list[pd.Timestamp]] = {}
    if actions is not None and len(actions):
        a = actions.assign(date=pd.to_datetime(actions["date"]))
        act_dates = {s: list(g["date"]) for s, g in a.groupby("symbol")}
    rows = [
        check_symbol(f, session_dates, policy, act_dates.get(str(f["symbol"].iloc[0]), []), fill_limit)
        for f in frames
    ]
    table = pd.DataFrame([r for r in rows if r.get("rows")])
    lagging = _lagging(table, session_dates, fill_limit)
    summary: dict[str, Any] = {"symbols": len(table), "rows": int(table["rows"].sum()) if len(table) else 0}
    if len(table) and "span_sessions" in table.columns:
        span = int(table["span_sessions"].sum())
        summary["span_sessions"] = span
        summary["missing_sessions"] = int(table["missing_sessions"].sum())
        summary["missing_after_fill"] = int(table["missing_after_fill"].sum())
        summary["filled_sessions"] = int(table["filled_sessions"].sum())
        summary["missing_pct"] = 100.0 * summary["missing_after_fill"] / max(span, 1)
        summary["missing_pct_before_fill"] = 100.0 * summary["missing_sessions"] / max(span, 1)
        summary["filled_pct"] = 100.0 * summary["filled_sessions"] / max(span, 1)
    for col in (
        "duplicate_dates",
        "ohlc_violations",
        "ohlc_noise",
        "non_positive",
        "nan_close",
        "nan_ohl",
        "stale_runs",
        "zero_volume_rows",
        "return_outliers",
    ):
        if col in table.columns:
            summary[col] = int(table[col].sum())
    if "liquid" in table.columns:
        summary["illiquid_symbols"] = int((~table["liquid"]).sum())
    if len(lagging):
        table = table.merge(lagging[["symbol", "lag_sessions"]], on="symbol", how="left")
        table["lag_sessions"] = table["lag_sessions"].fillna(0).astype(int)
    summary["last_session"] = str(table["last"].max()) if "last" in table.columns else None
    summary["lagging"] = lagging.to_dict("records")
    summary["stale"] = [r["symbol"] for r in summary["lagging"] if r["past_fill_limit"]]
    summary["fill_limit_sessions"] = int(fill_limit)
    if "gaps_over_fill_limit" in table.columns:
        summary["gaps_over_fill_limit"] = {
            r["symbol"]: r["gaps_over_fill_limit"]
            for r in table.to_dict("records")
            if r["gaps_over_fill_limit"]
        }
    summary["policy"] = asdict(policy)
    return table, summary


def _lagging(table: pd.DataFrame, session_dates: np.ndarray | None, fill_limit: int) -> pd.DataFrame:
    """Symbols whose last bar is before the newest one, with the sessions between (calendar sessions when
    given, else the distinct last dates seen), worst first."""
    cols = ["symbol", "last", "lag_sessions", "past_fill_limit"]
    if not len(table) or "last" not in table.columns:
        return pd.DataFrame(columns=cols)
    last = pd.to_datetime(table["last"])
    newest = last.max()
    if session_dates is not None and len(session_dates):
        cal = pd.DatetimeIndex(np.asarray(session_dates).astype("datetime64[ns]"))
        cal = cal[cal <= newest]
        lag = len(cal) - np.searchsorted(cal, last.to_numpy(), side="right")
    else:
        uniq = np.sort(last.unique())
        lag = len(uniq) - 1 - np.searchsorted(uniq, last.to_numpy())
    out = pd.DataFrame({"symbol": table["symbol"], "last": table["last"], "lag_sessions": lag.astype(int)})
    out["past_fill_limit"] = out["lag_sessions"] > fill_limit
    out = out[out["lag_sessions"] > 0].sort_values(["lag_sessions", "symbol"], ascending=[False, True])
    return out[cols].reset_index(drop=True)
