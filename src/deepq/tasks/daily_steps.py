"""The steps of `deepq daily` (tasks/daily.py runs them in order and keeps their state).

Each step takes the run's `Context` and returns a short summary of what it did, or raises `StepFailed` with
the reason. Steps are safe to repeat: the update appends only sessions the cache lacks, predictions are
merged into one Parquet file keyed by (model, date, symbol), the Postgres append ignores rows it has, the
monitor rewrites its report and a reload swaps in the same panel again.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from deepq.data.cache import ParquetStore
from deepq.data.quality import quality_report
from deepq.export.registry import ModelVersion
from deepq.tasks.hydra_utils import CONFIG_DIR
from deepq.tasks.predict import PredictError, Scorer, freshness_gate, open_scorer, score

KEY = ("model", "date", "symbol")  # one prediction per model, as-of date and symbol


class StepFailed(RuntimeError):
    """A step that cannot go on; the message says why (the run stops, the next run retries the step)."""


@dataclass
class Context:
    cfg: DictConfig
    version: ModelVersion
    out: Path  # state, predictions, monitor reports
    cache_root: Path | None  # the cache `data update` refreshes (None: the model reads no cache)
    previous_session: str | None = None  # the data's last session before this run's update
    last_session: str | None = None  # ... and after it: the key of this run's state
    scorer: Scorer | None = field(default=None, repr=False)
    data_cfg: DictConfig | None = field(default=None, repr=False)

    @property
    def predictions(self) -> Path:
        return self.out / "predictions.parquet"

    def data_overrides(self) -> list[str]:
        return [f"data.{k}={v}" for k, v in dict(self.cfg.data_overrides).items()]

    def open_scorer(self) -> Scorer:
        if self.scorer is None:  # read once per run, after the update: the new sessions are in it
            self.scorer = open_scorer(self.version.ref, self.cfg.registry, overrides=self.data_overrides())
        return self.scorer


def cache_last_session(root: Path) -> str | None:
    man = ParquetStore(root).manifest()
    return str(pd.Timestamp(man["last_date"].max()).date()) if len(man) else None


# ---- data update ------------------------------------------------------------------------------------------


def data_config(ctx: Context) -> DictConfig:
    """`deepq data`'s config for the model's cache (composed once per run: Hydra takes most of a second)."""
    from deepq.tasks.data import load_config

    if ctx.data_cfg is None:
        given = list(ctx.cfg["update"].overrides)
        if not any(o.startswith("data.root=") for o in given):
            given.insert(0, f"data.root={ctx.cache_root}")
        ctx.data_cfg = load_config(given)
    return ctx.data_cfg


def step_update(ctx: Context) -> str:
    from deepq.tasks.data import build_chain, store_and_sessions, syncer

    cfg = data_config(ctx)
    store, days = store_and_sessions(cfg)
    symbols = list(store.manifest()["symbol"])
    if not symbols:
        raise StepFailed(f"cache {store.root} is empty: fill it with `deepq data import` or `download`")
    report = syncer(cfg, store, days, build_chain(cfg)).update(symbols)
    if len(report.failed) == len(symbols):
        first = next(iter(report.failed.items()))
        raise StepFailed(f"every symbol failed to update (first: {first[0]}: {first[1]})")
    appended = sum(1 for s in report.status.values() if s.startswith(("appended", "refetched")))
    failed = f", failed {sorted(report.failed)[:5]}" if report.failed else ""
    return f"{appended}/{len(symbols)} symbols got new rows ({report.rows_written:,} rows written){failed}"


# ---- quality gate -----------------------------------------------------------------------------------------


def step_quality(ctx: Context) -> str:
    from deepq.tasks.data import store_and_sessions

    assert ctx.last_session is not None
    cfg = data_config(ctx)
    store, days = store_and_sessions(cfg)
    q = ctx.cfg.quality
    newest = pd.Timestamp(ctx.last_session)
    before = pd.Timestamp(ctx.previous_session) if ctx.previous_session else None
    live, covered, frames = [], [], []
    for sym in store.symbols():
        frame = store.read_symbol(sym)
        if frame is None or frame.empty:
            continue
        tail = frame.tail(int(q.window_sessions))
        frames.append(tail)
        if before is None or frame["date"].max() >= before:  # it trades: it should have today's bar
            live.append(sym)
            filled = tail["filled"] if "filled" in tail.columns else pd.Series(False, index=tail.index)
            if ((tail["date"] == newest) & ~filled.astype(bool)).any():  # a bar the gap policy did not invent
                covered.append(sym)
    _, summary = quality_report(iter(frames), days, instantiate(cfg.sources.quality))
    coverage = len(covered) / max(len(live), 1)
    if coverage < float(q.min_coverage):
        missing = sorted(set(live) - set(covered))
        raise StepFailed(
            f"only {len(covered)}/{len(live)} symbols have a bar on {ctx.last_session} "
            f"(< min_coverage {q.min_coverage}); missing: {missing[:10]}"
        )
    for col in ("non_positive", "nan_close", "duplicate_dates"):
        if summary.get(col, 0):
            raise StepFailed(f"{summary[col]} rows with {col} in the last {q.window_sessions} sessions")
    missing_pct = float(summary.get("missing_pct", 0.0))
    if missing_pct > float(q.max_missing_pct):
        raise StepFailed(
            f"{missing_pct:.2f} % missing symbol-sessions (> max_missing_pct {q.max_missing_pct})"
        )
    return f"{len(covered)}/{len(live)} symbols on {ctx.last_session}, {missing_pct:.2f} % missing"


# ---- predict ----------------------------------------------------------------------------------------------


def scored_through(path: Path, model: str) -> str | None:
    if not path.exists():
        return None
    dates = pd.read_parquet(path, columns=["model", "date"])
    dates = dates.loc[dates["model"] == model, "date"]
    return str(pd.Timestamp(dates.max()).date()) if len(dates) else None


def merge_predictions(path: Path, new: pd.DataFrame) -> pd.DataFrame:
    """The file's rows with `new` in place of any row of the same (model, date, symbol): a rerun of a step
    that was stopped after writing adds no duplicate."""
    if not path.exists():
        return new.sort_values(list(KEY), ignore_index=True)
    old = pd.read_parquet(path)
    both = pd.concat([old, new], ignore_index=True)
    return both.drop_duplicates(list(KEY), keep="last").sort_values(list(KEY), ignore_index=True)


def step_predict(ctx: Context, after: str | None) -> tuple[str, str]:
    """Score every session after `after` (the last one scored) through the newest; (summary, last date)."""
    from deepq.tasks.predict import write_predictions

    scorer = ctx.open_scorer()
    dates = scorer.source.panel.dates
    last = dates[-1]
    lo = np.datetime64(after, "D") if after else None
    rows = np.flatnonzero(dates > lo) if lo is not None else np.asarray([len(dates) - 1])
    if not len(rows):  # scored already (a run stopped after writing): score the newest session again
        rows = np.asarray([len(dates) - 1])
    try:
        freshness_gate(scorer, rows)
    except PredictError as e:
        raise StepFailed(str(e)) from None
    frame = score(scorer, rows)
    merged = merge_predictions(ctx.predictions, frame)
    write_predictions(merged, ctx.predictions, bool(ctx.cfg.predict.csv))
    pg = ""
    if ctx.cfg.predict.pg_dsn_env:
        from deepq.tasks.predict_store import append_postgres

        dsn = os.environ.get(str(ctx.cfg.predict.pg_dsn_env))
        if not dsn:
            raise StepFailed(f"${ctx.cfg.predict.pg_dsn_env} is not set (predict.pg_dsn_env)")
        pg = f"; postgres: {append_postgres(dsn, frame)} new rows"
    first = str(dates[rows[0]])
    span = first if first == str(last) else f"{first} .. {last}"
    scored = int(frame["in_universe"].sum())
    return f"{scored} scores for {span} -> {ctx.predictions}{pg}", str(last)


# ---- monitor ----------------------------------------------------------------------------------------------


def step_monitor(ctx: Context) -> tuple[str, dict[str, Any]]:
    from deepq.tasks.monitor import monitor

    base = OmegaConf.load(Path(CONFIG_DIR) / "monitor" / "default.yaml")
    mine = {
        "model": ctx.version.ref,
        "registry": str(ctx.cfg.registry),
        "out": str(ctx.out / "monitor"),
        "retrain": bool(ctx.cfg.monitor.retrain),
        "data_overrides": OmegaConf.to_container(ctx.cfg.data_overrides, resolve=True),
    }
    cfg = OmegaConf.merge(base, mine, ctx.cfg.monitor.overrides)
    assert isinstance(cfg, DictConfig)
    try:
        report = monitor(cfg)
    except SystemExit as e:  # the task's own clear error (e.g. no usable cells in the window)
        raise StepFailed(str(e.code)) from None
    alerts = [a["kind"] for a in report["alerts"]]
    retrained = (report.get("retrained") or {}).get("ref")
    what = f"alerts {alerts}" if alerts else "no alerts"
    what += f"; retrained -> candidate {retrained}" if retrained else ""
    return f"{what} (window to {report['window']['to']})", {"alerts": alerts, "retrained": retrained}


# ---- server reload ----------------------------------------------------------------------------------------


def step_reload(ctx: Context) -> str:
    s = ctx.cfg.server
    key = os.environ.get(str(s.api_key_env))
    if not key:
        raise StepFailed(f"${s.api_key_env} is not set: the server's reload needs its API key")
    url = str(s.url).rstrip("/") + "/v1/admin/reload"
    req = urllib.request.Request(url, data=b"", method="POST", headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(req, timeout=float(s.timeout_s)) as resp:  # noqa: S310 (configured URL)
            body = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        raise StepFailed(f"{url}: HTTP {e.code} {e.read()[:200].decode(errors='replace')}") from None
    except (urllib.error.URLError, OSError) as e:
        raise StepFailed(f"{url}: {e}") from None
    served = str(body.get("data_as_of", ""))
    if ctx.last_session and served < ctx.last_session:
        raise StepFailed(f"{url} reloaded but serves data through {served or '?'}, not {ctx.last_session}")
    return f"{url}: serving data through {served}"
