"""Filling and refreshing a store: download, incremental update, and import from a local file.

Every symbol goes through the same steps before it is written: validated rows (deepq.data.store), cleaned
and aligned to the session calendar with the gap policy (deepq.data.quality.prepare_symbol), then written
atomically, whole. A symbol that fails is not written, so the store never holds a partial history; a run that
stops half-way resumes where it stopped (`download` skips symbols already cached unless `force`).

Incremental update: fetch from `overlap_sessions` sessions before the last cached date. If the overlapping
rows agree (relative difference <= `rtol` on close, equal volume within `rtol`), append the new rows. If they
disagree, a split or dividend has restated history (backward adjustment changes every earlier price): log
the reason and refetch that symbol's full history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from deepq.data.calendar import GapPolicy
from deepq.data.chain import FallbackChain
from deepq.data.panel import DataError
from deepq.data.quality import QualityPolicy, prepare_symbol
from deepq.data.sources.local import LocalSource
from deepq.data.store import PriceStore, to_cache_frame

log = logging.getLogger(__name__)
Progress = Callable[[str, str], None]  # (symbol, status)


@dataclass(frozen=True)
class UpdatePolicy:
    overlap_sessions: int = 5
    rtol: float = 1e-6


@dataclass
class SyncReport:
    status: dict[str, str] = field(default_factory=dict)  # symbol -> what happened
    rows_written: int = 0
    refetched: dict[str, str] = field(default_factory=dict)  # symbol -> why
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> why
    cleaning: dict[str, dict] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(sorted(self.status.items()), columns=["symbol", "status"])


def overlap_mismatch(cached: pd.DataFrame, fresh: pd.DataFrame, rtol: float) -> str | None:
    """Why the rows both frames hold disagree (first differing date), or None if they agree."""
    a = (
        cached[~cached["filled"]].set_index("date")
        if "filled" in cached.columns
        else cached.set_index("date")
    )
    b = fresh.set_index("date")
    common = a.index.intersection(b.index)
    if common.empty:
        return None
    for col in ("close", "volume"):
        x = a.loc[common, col].to_numpy(dtype=np.float64)
        y = b.loc[common, col].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(y - x) / np.maximum(np.abs(x), 1e-12)
        bad = np.flatnonzero(rel > rtol)
        if len(bad):
            i = bad[0]
            return (
                f"overlap disagrees on {common[i].date()} {col}: cached {x[i]:.6g}, fresh {y[i]:.6g} "
                f"(relative {rel[i]:.2e} > {rtol:g}; a split or dividend restated history)"
            )
    return None


class Syncer:
    def __init__(
        self,
        store: PriceStore,
        chain: FallbackChain | None = None,
        session_dates: np.ndarray | None = None,
        quality: QualityPolicy | None = None,
        gaps: GapPolicy | None = None,
        update: UpdatePolicy | None = None,
        asset_types: Mapping[str, str] | None = None,
        batch_size: int = 50,
    ):
        self.store, self.chain = store, chain
        self.session_dates = session_dates
        self.quality = quality or QualityPolicy()
        self.gaps = gaps or GapPolicy()
        self.update_policy = update or UpdatePolicy()
        self.asset_types = dict(asset_types or {})
        self.batch_size = batch_size

    def _chain(self) -> FallbackChain:
        if self.chain is None:
            raise ValueError("this operation needs a source chain")
        return self.chain

    def prepare(self, symbol: str, rows: pd.DataFrame, report: SyncReport) -> pd.DataFrame:
        """Validated, cleaned, calendar-aligned cached rows of one symbol."""
        frame = to_cache_frame(rows, symbol=symbol, asset_type=self.asset_types.get(symbol), where=symbol)
        if symbol in self.asset_types:
            frame["asset_type"] = self.asset_types[symbol]
        frame, log_ = prepare_symbol(frame, self.session_dates, self.quality, self.gaps)
        report.cleaning[symbol] = log_
        return frame

    def _write(self, symbol: str, rows: pd.DataFrame, report: SyncReport, status: str) -> None:
        frame = self.prepare(symbol, rows, report)
        if frame.empty:
            report.failed[symbol] = "no rows left after cleaning"
            report.status[symbol] = "failed: no rows left after cleaning"
            return
        self.store.write(symbol, frame)
        report.rows_written += len(frame)
        report.status[symbol] = status

    # ---- download
    def download(
        self,
        symbols: Sequence[str],
        start: str | None = None,
        end: str | None = None,
        force: bool = False,
        progress: Progress | None = None,
    ) -> SyncReport:
        """Full histories of `symbols` (already cached ones skipped unless `force`: a rerun resumes)."""
        chain = self._chain()
        report = SyncReport()
        have = set(self.store.manifest()["symbol"]) if not force else set()
        todo = [s for s in symbols if s not in have]
        for s in symbols:
            if s in have:
                report.status[s] = "cached (skipped)"
                if progress:
                    progress(s, "cached")
        for i in range(0, len(todo), self.batch_size):
            batch = todo[i : i + self.batch_size]
            for sym, res in chain.fetch_many(batch, start, end).items():
                if res.frame is None:
                    why = "; ".join(f"{k}: {v}" for k, v in res.errors.items())
                    report.failed[sym] = why
                    report.status[sym] = f"failed: {why}"
                else:
                    try:
                        self._write(sym, res.frame, report, f"downloaded from {res.source}")
                    except DataError as e:
                        report.failed[sym] = str(e)
                        report.status[sym] = f"failed: {e}"
                if progress:
                    progress(sym, report.status[sym])
        return report

    # ---- incremental update
    def _overlap_start(self, last: pd.Timestamp) -> str:
        k = self.update_policy.overlap_sessions
        if self.session_dates is not None and len(self.session_dates):
            i = int(np.searchsorted(self.session_dates, np.datetime64(last.date(), "D"), side="right")) - 1
            return str(pd.Timestamp(self.session_dates[max(i - k + 1, 0)]).date())
        return str((last - pd.tseries.offsets.BDay(k - 1)).date())

    def update(
        self,
        symbols: Sequence[str] | None = None,
        end: str | None = None,
        progress: Progress | None = None,
    ) -> SyncReport:
        chain = self._chain()
        report = SyncReport()
        manifest = self.store.manifest().set_index("symbol")
        for sym in symbols if symbols is not None else list(manifest.index):
            if sym not in manifest.index:
                report.failed[sym] = "not cached (use download)"
                report.status[sym] = "failed: not cached (use download)"
                continue
            try:
                self._update_one(chain, sym, manifest.loc[sym], end, report)
            except DataError as e:
                report.failed[sym] = str(e)
                report.status[sym] = f"failed: {e}"
            if progress:
                progress(sym, report.status[sym])
        return report

    def _update_one(
        self, chain: FallbackChain, sym: str, entry: pd.Series, end: str | None, report: SyncReport
    ) -> None:
        last = pd.Timestamp(entry["last_date"])
        if end is not None and pd.Timestamp(end) <= last:
            report.status[sym] = "up to date"
            return
        res = chain.fetch(sym, self._overlap_start(last), end)
        if res.frame is None:
            why = "; ".join(f"{k}: {v}" for k, v in res.errors.items())
            report.failed[sym] = why
            report.status[sym] = f"failed: {why} (cache unchanged)"
            return
        cached = self.store.read_symbol(sym)
        assert cached is not None
        fresh = res.frame
        reason = overlap_mismatch(cached, fresh, self.update_policy.rtol)
        if reason is not None:
            log.warning("symbol %s: %s; refetching its full history", sym, reason)
            report.refetched[sym] = reason
            full = chain.fetch(sym, str(pd.Timestamp(entry["first_date"]).date()), end)
            if full.frame is None:
                why = "; ".join(f"{k}: {v}" for k, v in full.errors.items())
                report.failed[sym] = f"refetch failed ({why})"
                report.status[sym] = f"failed: refetch failed ({why}) (cache unchanged)"
                return
            self._write(sym, full.frame, report, f"refetched from {full.source}: {reason}")
            return
        new = fresh[fresh["date"] > last]
        if new.empty:
            report.status[sym] = "up to date"
            return
        merge = getattr(self.store, "merge", None)
        if not callable(
            merge
        ):  # a store without a read-merge-write under a lock (PostgreSQL: its transaction)
            merged = pd.concat([cached[~cached["filled"]], new], ignore_index=True)
            self._write(sym, merged, report, f"appended {len(new)} rows from {res.source}")
            return
        added: list[int] = []

        def with_new_rows(current: pd.DataFrame | None) -> pd.DataFrame | None:
            # re-read under the symbol's lock: rows another writer added since `cached` was read stay
            base = cached if current is None else current
            rows = new[~new["date"].isin(base.loc[~base["filled"], "date"])]
            if rows.empty:
                return None
            frame = self.prepare(sym, pd.concat([base[~base["filled"]], rows], ignore_index=True), report)
            if frame.empty:
                raise DataError(f"symbol {sym}: no rows left after cleaning the update")
            added.append(len(rows))
            return frame

        entry = merge(sym, with_new_rows)
        if entry is None:
            report.status[sym] = "up to date"
            return
        report.rows_written += entry.rows
        report.status[sym] = f"appended {added[0]} rows from {res.source}"

    # ---- import
    def import_local(
        self,
        source: LocalSource,
        symbols: Sequence[str] | None = None,
        start: str | None = None,
        end: str | None = None,
        progress: Progress | None = None,
        chunk: int = 64,
    ) -> SyncReport:
        """Every symbol of a local file into the store (the manifest updated once per chunk of symbols)."""
        report = SyncReport()
        pending: list[tuple[str, pd.DataFrame]] = []

        def flush() -> None:
            write_many = getattr(self.store, "write_many", None)
            if callable(write_many):
                write_many(pending)
            else:
                for s, f in pending:
                    self.store.write(s, f)
            for s, f in pending:
                report.rows_written += len(f)
                report.status[s] = f"imported {len(f)} rows"
                if progress:
                    progress(s, report.status[s])
            pending.clear()

        for sym, rows in source.iter_frames(symbols, start, end):
            if rows.empty:
                continue
            frame = self.prepare(sym, rows, report)
            if frame.empty:
                report.failed[sym] = "no rows left after cleaning"
                report.status[sym] = "skipped: no rows left after cleaning (thin history)"
                if progress:
                    progress(sym, report.status[sym])
                continue
            pending.append((sym, frame))
            if len(pending) >= chunk:
                flush()
        if pending:
            flush()
        return report
