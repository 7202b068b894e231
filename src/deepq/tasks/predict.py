"""`deepq predict`: batch scoring with a registered model, for one date, a range, or every new session.

    deepq predict --date 2024-06-28                       # the default model: production, else latest candidate
    deepq predict --model lstm_returns:3 --start 2024-01-02 --end 2024-06-28 --csv
    deepq predict --since-training-end --data cache       # every session after the model's training window
    deepq predict --date 2024-06-28 data.prices=/backup/prices.parquet

Features are recomputed from the data (the run's own `data` config, or `--data NAME` from conf/data/ with the
run's symbols) with the run's feature builder and the normaliser saved with the model, through the very code
the server uses (deepq.serve.inputs). Features are causal, so the score for date t reads bars up to t only and
equals the out-of-fold prediction the training run wrote for t when the run's exported fold covered t.
Output: one row per (as-of date, symbol with a bar that day) with model ref, data fingerprint and whether the
symbol was in the model's universe that day (no score otherwise), to Parquet (and CSV with --csv).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from deepq.export.registry import ModelVersion, Registry, default_root
from deepq.features.freshness import StaleInputError
from deepq.serve.inputs import InputBuilder, PanelFeatures, _load_panel_features, postprocess
from deepq.tasks.hydra_utils import CONFIG_DIR
from deepq.utils.io import write_atomic, write_parquet_atomic
from deepq.utils.runinfo import array_fingerprint

log = logging.getLogger("deepq.predict")


class PredictError(ValueError):
    """A date, model or data choice that cannot be scored; the message names it."""


@dataclass(frozen=True)
class Scorer:
    """A registered version with its inputs rebuilt on the current data."""

    version: ModelVersion
    module: torch.jit.ScriptModule
    meta: Mapping[str, Any]
    builder: InputBuilder
    data_fingerprint: str

    @property
    def source(self) -> PanelFeatures:
        return self.builder.source

    @property
    def train_end(self) -> np.datetime64:
        """The last session of the exported fold's training window (model.json `train`: 'from .. to')."""
        return np.datetime64(str(self.meta["train"]).split("..")[-1].strip(), "D")


def run_config(
    version: ModelVersion,
    data: str | Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    allow_stale_inputs: bool = False,
) -> DictConfig:
    """The version's resolved training config with its `data` node replaced by `data` (a conf/data name or a
    mapping; the run's symbols and start kept unless given), its end date lifted (score the data as it is
    now), then `data.key=value` overrides applied."""
    cfg = OmegaConf.create((version.path / "config.yaml").read_text())
    assert isinstance(cfg, DictConfig), f"{version.ref}: config.yaml is not a mapping"
    if data is not None:
        loaded = OmegaConf.load(Path(CONFIG_DIR) / "data" / f"{data}.yaml") if isinstance(data, str) else data
        node = OmegaConf.merge(loaded, {})
        if not isinstance(node, DictConfig):
            raise PredictError(f"data config {data!r} is not a mapping")
        for key in ("symbols", "start"):  # score the run's own symbols unless the new node names others
            if node.get(key) is None and cfg.data.get(key) is not None:
                node[key] = cfg.data[key]
        with open_dict(cfg):
            cfg.data = node
    with open_dict(cfg):  # the data as it is now: the run's end date would hide the sessions after it
        cfg.data.end = None
        if allow_stale_inputs:  # accept a reference series stale past the fill limit (features/freshness.py)
            cfg.freshness = OmegaConf.merge(cfg.get("freshness") or {}, {"allow_stale": True})
    bad = [o for o in overrides if not o.startswith("data.")]
    if bad:
        raise PredictError(f"only data.key=value overrides apply to scoring; got {bad}")
    if overrides:
        merged = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        assert isinstance(merged, DictConfig)
        cfg = merged
    return cfg


def open_scorer(
    ref: str | None = None,
    registry: str | Path | None = None,
    data: str | Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    allow_stale_inputs: bool = False,
) -> Scorer:
    """Resolve `ref` (None = production, else the latest candidate), verify and load it, and rebuild its
    inputs on the data as it is now. Not cached: each call reads the data afresh, so new sessions count."""
    reg = Registry(registry or default_root())
    mv = reg.resolve(ref)
    module, meta = reg.load(mv)  # verifies every artifact's sha256
    cfg = run_config(mv, data, overrides, allow_stale_inputs)
    rank = (meta.get("normalizer") or {}).get("method") == "rank"
    # the server's loader, uncached: its per-process cache is keyed on the config, not on the data's content
    source = _load_panel_features(cfg, int(meta["lookback"]), rank, None)
    try:
        builder = InputBuilder(source, meta)
    except ValueError as e:
        raise PredictError(f"{mv.ref}: {e}") from None
    fingerprint = array_fingerprint(source.panel.dates.astype("int64"), source.panel["close"])
    return Scorer(mv, module, meta, builder, fingerprint)


def select_dates(
    panel_dates: np.ndarray,
    train_end: np.datetime64,
    dates: Sequence[str] = (),
    start: str | None = None,
    end: str | None = None,
    since_training_end: bool = False,
) -> np.ndarray:
    """Panel rows to score. Explicit dates must be sessions of the panel (a weekend, a holiday or a day after
    the last bar is an error naming the last session, never silently the session before)."""
    last = panel_dates[-1]
    if dates:
        rows = []
        for d in dates:
            day = np.datetime64(pd.Timestamp(d).date(), "D")
            i = int(np.searchsorted(panel_dates, day))
            if i >= len(panel_dates) or panel_dates[i] != day:
                why = "after the last session" if day > last else "not a session of the data"
                raise PredictError(f"as-of date {day} is {why} (last session {last})")
            rows.append(i)
        return np.unique(np.asarray(rows, dtype=np.int64))
    lo = np.datetime64(pd.Timestamp(start).date(), "D") if start else None
    hi = np.datetime64(pd.Timestamp(end).date(), "D") if end else last
    if since_training_end:
        after = train_end + np.timedelta64(1, "D")
        lo = after if lo is None else max(lo, after)
    if lo is None:
        raise PredictError("give --date, --start [--end] or --since-training-end")
    if hi > last:
        raise PredictError(f"end date {hi} is after the last session {last}")
    return np.flatnonzero((panel_dates >= lo) & (panel_dates <= hi)).astype(np.int64)


def freshness_gate(scorer: Scorer, rows: np.ndarray) -> None:
    """The one place scoring checks the data before trusting it: every row to score must have bars. The data
    freshness gate (deepq.data.freshness, issue 15) plugs in here."""
    panel = scorer.source.panel
    present = np.isfinite(panel["close"][rows]).any(axis=1)
    if not present.all():
        empty = [str(d) for d in panel.dates[rows[~present]]]
        raise PredictError(f"no bars at all on {empty[:5]}: the data for these sessions is missing")


def score(scorer: Scorer, rows: np.ndarray, symbols: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (date row, symbol with a bar): pred/score/up and named outputs where the symbol was in the
    model's universe with a full window (`in_universe`), NaN otherwise."""
    panel, b = scorer.source.panel, scorer.builder
    cols = (
        np.arange(len(panel.symbols))
        if symbols is None
        else np.asarray([panel.symbol_index(s) for s in symbols], dtype=np.int64)
    )
    present = np.isfinite(panel["close"])[np.ix_(rows, cols)]
    tt, ss = np.nonzero(present)
    t, s = rows[tt], cols[ss]
    ok = b.servable[t, s]
    if b.cross_section and ok.any():  # scores depend on the cross-section: run each date's whole universe
        ut, us = np.nonzero(b.servable[rows])
        ut = rows[ut]
        order = np.lexsort((us, ut))
        ut, us = ut[order], us[order]
        full = _forward(scorer.module, b.model_inputs(ut, us), dates=ut)
        out = full[np.searchsorted(ut * len(panel.symbols) + us, t[ok] * len(panel.symbols) + s[ok])]
    else:
        out = _forward(scorer.module, b.model_inputs(t[ok], s[ok])) if ok.any() else None
    result = postprocess(out, dict(scorer.meta)) if out is not None else {}
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(panel.dates[t]),
            "symbol": np.asarray(panel.symbols)[s],
            "model": scorer.version.ref,
            "stage": scorer.version.stage,
            "in_universe": ok,
        }
    )
    for name in ("pred", "score", "up", *[n for n in result if n not in ("pred", "score", "up")]):
        col = np.full(len(frame), np.nan)
        if name in result:
            col[ok] = result[name]
        frame[name if name in ("pred", "score", "up") else f"out_{name}"] = col
    frame["data_fingerprint"] = scorer.data_fingerprint
    frame["data_as_of"] = pd.Timestamp(panel.dates[-1])
    # reference series accepted stale past the fill limit (--allow-stale-inputs): said on every row
    frame["stale_inputs"] = ",".join(g.series for g in scorer.source.lagging if g.stale)
    return frame.sort_values(["date", "symbol"], ignore_index=True)


def _forward(
    module: torch.jit.ScriptModule,
    inputs: tuple[torch.Tensor, ...],
    batch: int = 4096,
    dates: np.ndarray | None = None,
) -> np.ndarray:
    """The module over `inputs` in batches of about `batch` rows; with `dates` (sorted date rows of a
    cross-stock model's inputs) a batch ends only where a date ends, so no date is split."""
    n = len(inputs[0])
    bounds = list(range(0, n, batch)) + [n]
    if dates is not None:
        ends = np.r_[np.flatnonzero(np.diff(dates)) + 1, n]  # where each date's rows stop
        bounds = [0, *sorted({int(ends[np.searchsorted(ends, b)]) for b in bounds[1:]})]
    with torch.inference_mode():
        outs = [module(*(x[a:b] for x in inputs)).numpy() for a, b in zip(bounds, bounds[1:], strict=False)]
    return np.concatenate(outs)


def write_predictions(frame: pd.DataFrame, path: str | Path, csv: bool = False) -> list[Path]:
    """Atomic Parquet (and CSV beside it): a reader never sees half a file."""
    path = Path(path)
    written = [write_parquet_atomic(frame, path, index=False)]
    if csv:
        written.append(write_atomic(path.with_suffix(".csv"), lambda p: frame.to_csv(p, index=False)))
    return written


def predict(
    model: str | None = None,
    dates: Sequence[str] = (),
    start: str | None = None,
    end: str | None = None,
    since_training_end: bool = False,
    symbols: Sequence[str] | None = None,
    registry: str | Path | None = None,
    data: str | Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    allow_stale_inputs: bool = False,
) -> pd.DataFrame:
    """What `deepq predict` computes, as a frame (the Python API's `load_model(...).predict` calls this)."""
    scorer = open_scorer(model, registry, data, overrides, allow_stale_inputs)
    rows = select_dates(scorer.source.panel.dates, scorer.train_end, dates, start, end, since_training_end)
    freshness_gate(scorer, rows)
    return score(scorer, rows, symbols)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deepq predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model", help="registry ref (name:3, name:production); default production, else candidate"
    )
    p.add_argument("--registry", help="registry root (default $DEEPQ_REGISTRY or ./registry)")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--date", action="append", help="an as-of session (repeatable)")
    when.add_argument("--start", help="first as-of date of a range (with --end, default the last session)")
    when.add_argument(
        "--since-training-end", action="store_true", help="every session after the training window"
    )
    p.add_argument("--end")
    p.add_argument("--symbols", help="comma-separated (default every symbol with a bar)")
    p.add_argument("--data", help="a conf/data config to score on instead of the run's (e.g. cache)")
    p.add_argument(
        "--out", help="Parquet file (default predictions/<name>_v<version>_<first>_<last>.parquet)"
    )
    p.add_argument("--csv", action="store_true", help="also write CSV beside the Parquet file")
    p.add_argument("--pg-dsn-env", help="append to PostgreSQL: the variable holding the DSN (never the DSN)")
    p.add_argument(
        "--allow-stale-inputs",
        action="store_true",
        help="score although a reference series (SPY, a sector ETF, a source) is stale past the fill limit",
    )
    p.add_argument("overrides", nargs="*", help="data.key=value overrides of the data config")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    import os

    from rich.console import Console

    args = parser().parse_args(argv)
    console = Console()
    try:
        frame = predict(
            args.model,
            args.date or (),
            args.start,
            args.end,
            args.since_training_end,
            args.symbols.split(",") if args.symbols else None,
            args.registry,
            args.data,
            args.overrides,
            args.allow_stale_inputs,
        )
    except (PredictError, KeyError, StaleInputError) as e:
        raise SystemExit(f"deepq predict: {e}") from None
    if frame.empty:
        console.print("[yellow]no sessions to score[/] (nothing after the requested start)")
        return
    ref = str(frame["model"].iloc[0]).replace(":", "_v")
    first, last = (str(d.date()) for d in (frame["date"].min(), frame["date"].max()))
    out = Path(args.out or Path("predictions") / f"{ref}_{first}_{last}.parquet")
    for path in write_predictions(frame, out, args.csv):
        console.print(f"wrote {path}")
    if args.pg_dsn_env:
        from deepq.tasks.predict_store import append_postgres

        dsn = os.environ.get(args.pg_dsn_env)
        if not dsn:
            raise SystemExit(f"deepq predict: ${args.pg_dsn_env} is not set")
        console.print(f"postgres: {append_postgres(dsn, frame)} new rows")
    scored = int(frame["in_universe"].sum())
    console.print(
        f"[bold]{frame['model'].iloc[0]}[/]: {scored:,} scores over {frame['date'].nunique()} sessions "
        f"({first} .. {last}); data as of {frame['data_as_of'].iloc[0].date()}"
    )


if __name__ == "__main__":
    main()
