"""`deepq data`: fill, refresh, check and query the market data cache.

    deepq data import ../shared/data/prices.parquet     the shared dataset into the cache (with its meta files)
    deepq data download --universe sp500 --start 2005-01-01
    deepq data update                                   new sessions of every cached symbol
    deepq data quality [--json quality.json]            per-symbol checks; table + JSON
    deepq data sql "select symbol, count(*) from prices group by 1"
    deepq data manifest                                 the manifest, verified against the files (health: printed by download/update)

Configuration is Hydra's: the cache is `conf/data/cache.yaml` (root: $DEEPQ_CACHE or ./cache/market), the
source chain and cleaning policy `conf/sources/default.yaml`. Extra `key=value` arguments are Hydra overrides,
e.g. `deepq data download --symbols AAPL sources=local sources.gaps.max_gap_sessions=2`.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deepq.data.cache import ParquetStore
from deepq.data.calendar import CALENDAR_SINCE, sessions
from deepq.data.chain import FallbackChain
from deepq.data.panel import DEFAULT_FILL_LIMIT
from deepq.data.quality import quality_report
from deepq.data.sources.local import LocalSource
from deepq.data.sql import query
from deepq.data.sync import Syncer, SyncReport
from deepq.data.universe import ever_members, list_versions, load_symbol_list
from deepq.tasks.hydra_utils import CONFIG_DIR
from deepq.utils.io import write_json_atomic

console = Console(width=None if sys.stdout.isatty() else 160)
log = logging.getLogger("deepq.data")
OVERRIDE = re.compile(r"^[+~]?[A-Za-z_][\w.@/-]*=\S*$")  # a Hydra override, not a SQL text
META_FILES = ("sectors.parquet", "constituents.parquet", "actions.parquet", "constituent_changes.parquet")


def load_config(overrides: Sequence[str] = ()) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        names = [o.split("=", 1)[0].lstrip("+") for o in overrides]
        base = [] if "data" in names else ["data=cache"]
        base += [] if "sources" in names else ["+sources=default"]
        fixed = [f"+{o}" if o.startswith("sources=") else o for o in overrides]
        return compose("config", overrides=[*base, *fixed])


@contextmanager
def progress_bar(total: int, what: str):
    with Progress(
        TextColumn(f"[bold]{what}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(what, total=total, last="")

        def step(symbol: str, status: str) -> None:
            bar.update(task, advance=1, last=f"{symbol}: {status[:60]}")

        yield step


def build_chain(cfg: DictConfig) -> FallbackChain:
    sources = []
    for node in cfg.sources.chain:
        src = instantiate(node)
        if hasattr(src, "has_key") and not src.has_key:
            log.info("%s: no %s set; left out of the chain", src.name, getattr(src, "key_env", "key"))
            continue
        sources.append(src)
    return FallbackChain(sources, trip_after=int(cfg.sources.trip_after))


def store_and_sessions(cfg: DictConfig, end: str | None = None) -> tuple[ParquetStore, np.ndarray]:
    store = ParquetStore(cfg.data.root)
    store.meta_dir.mkdir(parents=True, exist_ok=True)
    days = sessions(str(cfg.sources.calendar), CALENDAR_SINCE, end, memo_dir=store.meta_dir)
    return store, days


def syncer(cfg: DictConfig, store: ParquetStore, days: np.ndarray, chain: FallbackChain | None) -> Syncer:
    return Syncer(
        store,
        chain,
        session_dates=days,
        quality=instantiate(cfg.sources.quality),
        gaps=instantiate(cfg.sources.gaps),
        update=instantiate(cfg.sources.incremental),
        asset_types=etf_types(cfg),
        batch_size=int(cfg.sources.batch_size),
    )


def etf_types(cfg: DictConfig) -> dict[str, str]:
    root = Path(cfg.sources.universes_dir)
    out: dict[str, str] = {}
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith("_etfs")):
            for sym in list_versions(folder.name, root)[-1].symbols:
                out[sym] = "etf"
    for sym in cfg.sources.context_symbols:
        if str(sym).startswith("^"):
            out[str(sym)] = "index"
    return out


def copy_meta(files: dict[str, Path], store: ParquetStore) -> list[str]:
    copied = []
    for name, src in files.items():
        if src.exists():
            dst = store.meta_dir / name
            tmp = dst.with_suffix(".tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
            copied.append(name)
    return copied


def print_report(report: SyncReport, title: str) -> None:
    counts: dict[str, int] = {}
    for status in report.status.values():
        key = status.split(":")[0].split(" from ")[0]
        key = "appended" if key.startswith("appended") else key
        key = "imported" if key.startswith("imported") else key
        counts[key] = counts.get(key, 0) + 1
    console.print(f"[bold]{title}[/]: {counts}; {report.rows_written:,} rows written")
    for sym, why in list(report.refetched.items())[:20]:
        console.print(f"  refetched {sym}: {why}")
    for sym, why in list(report.failed.items())[:20]:
        console.print(f"  [red]failed[/] {sym}: {why}")
    if len(report.failed) > 20:
        console.print(f"  ... and {len(report.failed) - 20} more failures")


def print_frame(df: pd.DataFrame, title: str, limit: int = 50) -> None:
    table = Table(title=title)
    for col in df.columns:
        table.add_column(str(col), justify="right" if pd.api.types.is_numeric_dtype(df[col]) else "left")
    for row in df.head(limit).itertuples(index=False):
        table.add_row(*[f"{v:.6g}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)
    if len(df) > limit:
        console.print(f"({len(df) - limit} more rows; use --csv or --json for all)")


# ---- commands ------------------------------------------------------------------------------------------


def cmd_import(args: argparse.Namespace, cfg: DictConfig) -> int:
    path = Path(args.path)
    src = LocalSource(path, mark_source=not args.keep_source)
    store, days = store_and_sessions(cfg)
    beside = path.parent if path.is_file() else path
    copied = copy_meta({n: beside / n for n in META_FILES}, store)
    symbols = args.symbols.split(",") if args.symbols else None
    total = len(symbols) if symbols else len(src.symbols())
    with progress_bar(total, f"import {path.name}") as step:
        report = syncer(cfg, store, days, None).import_local(
            src, symbols, args.start, args.end, progress=step
        )
    print_report(report, f"import into {store.root}")
    if copied:
        console.print(f"meta files copied: {copied}")
    return 0


def resolve_symbols(args: argparse.Namespace, cfg: DictConfig) -> list[str]:
    if args.symbols:
        return args.symbols.split(",")
    if args.universe == "sp500":
        members = ever_members(cfg.sources.constituents, start=args.start, end=args.end)
        return sorted(set(members) | {str(s) for s in cfg.sources.context_symbols})
    return list(load_symbol_list(args.universe, cfg.sources.universes_dir, as_of=args.as_of).symbols)


def cmd_download(args: argparse.Namespace, cfg: DictConfig) -> int:
    symbols = resolve_symbols(args, cfg)
    store, days = store_and_sessions(cfg, args.end)
    copy_meta(
        {
            "constituents.parquet": Path(cfg.sources.constituents),
            "sectors.parquet": Path(cfg.sources.sectors),
        },
        store,
    )
    chain = build_chain(cfg)
    console.print(f"download {len(symbols)} symbols from {[s.name for s in chain.sources]} into {store.root}")
    with progress_bar(len(symbols), "download") as step:
        report = syncer(cfg, store, days, chain).download(symbols, args.start, args.end, args.force, step)
    print_report(report, "download")
    print_frame(chain.health_table(), "source health")
    return 1 if report.failed and len(report.failed) == len(symbols) else 0


def cmd_update(args: argparse.Namespace, cfg: DictConfig) -> int:
    store, days = store_and_sessions(cfg, args.end)
    chain = build_chain(cfg)
    symbols = args.symbols.split(",") if args.symbols else list(store.manifest()["symbol"])
    with progress_bar(len(symbols), "update") as step:
        report = syncer(cfg, store, days, chain).update(symbols, args.end, step)
    print_report(report, "update")
    print_frame(chain.health_table(), "source health")
    return 0


def cmd_quality(args: argparse.Namespace, cfg: DictConfig) -> int:
    store, days = store_and_sessions(cfg)
    policy = instantiate(cfg.sources.quality)
    actions_path = store.meta_dir / "actions.parquet"
    actions = pd.read_parquet(actions_path) if actions_path.exists() else None
    if args.path:  # check a raw file as it is (before cleaning)
        src = LocalSource(args.path, mark_source=False)
        frames = (f for _, f in src.iter_frames(args.symbols.split(",") if args.symbols else None))
        total = len(src.symbols())
        where = str(args.path)
    else:
        names = args.symbols.split(",") if args.symbols else store.symbols()
        frames = (store.read_symbol(s) for s in names)  # type: ignore[misc]
        total, where = len(names), str(store.root)

    def counted(it: Any, step: Any) -> Any:
        for f in it:
            if f is not None and len(f):
                step(str(f["symbol"].iloc[0]), "checked")
                yield f

    if args.start:
        frames = (f[f["date"] >= pd.Timestamp(args.start)] for f in frames if f is not None)
    with progress_bar(total, "quality") as step:
        limit = int((cfg.get("freshness") or {}).get("fill_limit_sessions", DEFAULT_FILL_LIMIT))
        table, summary = quality_report(counted(frames, step), days, policy, actions, limit)
    summary["where"] = where
    summary["start"] = args.start
    worst = table.assign(
        issues=table[
            ["ohlc_violations", "non_positive", "missing_after_fill", "return_outliers", "stale_runs"]
        ].sum(axis=1)
    ).sort_values(["issues", "missing_after_fill"], ascending=False)
    cols = {
        "symbol": "symbol",
        "rows": "rows",
        "first": "first",
        "last": "last",
        "missing_after_fill": "missing",
        "filled_sessions": "filled",
        "ohlc_violations": "ohlc",
        "stale_runs": "stale",
        "max_zero_volume_streak": "0-vol run",
        "return_outliers": "outliers",
        "median_dollar_volume": "med $vol",
    }
    shown_cols = worst[[c for c in cols if c in worst.columns]].rename(columns=cols)
    print_frame(shown_cols, f"quality: {where} (worst first)", args.top)
    print_freshness(summary)
    shown = {
        k: v for k, v in summary.items() if k not in ("policy", "lagging", "stale", "gaps_over_fill_limit")
    }
    console.print(shown)
    out = Path(args.json or Path(store.root) / "quality.json")
    write_json_atomic({"summary": summary, "symbols": table.to_dict("records")}, out)
    label = "missing data as given (not cleaned)" if args.path else "missing data after cleaning"
    console.print(
        f"{label}: [bold]{summary.get('missing_pct', float('nan')):.4f} %[/] of "
        f"{summary.get('span_sessions', 0):,} symbol-sessions (filled {summary.get('filled_pct', 0):.4f} %); "
        f"JSON in {out}"
    )
    return 0


def print_freshness(summary: dict[str, Any]) -> None:
    """Every series that ends before the last session (a reference one past the fill limit would turn the
    features reading it NaN, and train/predict/serve refuse it), and every gap longer than the limit."""
    limit = summary["fill_limit_sessions"]
    lagging = pd.DataFrame(summary["lagging"])
    if len(lagging):
        past = int(lagging["past_fill_limit"].sum())
        print_frame(
            lagging,
            f"series ending before the last session {summary['last_session']}: {len(lagging)} "
            f"({past} past the fill limit of {limit} sessions)",
            40,
        )
    else:
        console.print(f"freshness: every series reaches the last session {summary['last_session']}")
    gaps = summary.get("gaps_over_fill_limit") or {}
    if gaps:
        rows = [{"symbol": s, "from": a, "to": b, "sessions": n} for s, g in gaps.items() for a, b, n in g]
        print_frame(pd.DataFrame(rows), f"gaps longer than the fill limit ({limit} sessions)", 40)


def cmd_sql(args: argparse.Namespace, cfg: DictConfig) -> int:
    df = query(cfg.data.root, args.query)
    if args.csv:
        df.to_csv(sys.stdout, index=False)
    elif args.json:
        sys.stdout.write(df.to_json(orient="records", date_format="iso") + "\n")
    else:
        print_frame(df, args.query[:80], args.limit)
    return 0


def cmd_manifest(args: argparse.Namespace, cfg: DictConfig) -> int:
    store = ParquetStore(cfg.data.root)
    if args.repair:  # after a crash: temp files removed, stale manifest rows recomputed from the files
        for line in store.repair():
            console.print(f"[yellow]repaired[/] {line}")
    man = store.manifest()
    print_frame(man, f"manifest of {store.root} ({len(man)} symbols)", args.limit)
    problems = store.verify()
    for p in problems[:20]:
        console.print(f"[red]{p}[/]")
    return 1 if problems else 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="deepq data", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import", help="fill the cache from a local Parquet/CSV file or folder")
    p.add_argument("path")
    p.add_argument("--symbols")
    p.add_argument("--start")
    p.add_argument("--end")
    p.add_argument("--keep-source", action="store_true", help="keep the file's source column as is")
    p.set_defaults(fn=cmd_import)

    p = sub.add_parser("download", help="full histories from the source chain (resumes; --force refetches)")
    p.add_argument(
        "--universe", default="sp500", help="sp500 (point-in-time members) or a list in data/universes"
    )
    p.add_argument("--as-of", help="version of a named list")
    p.add_argument("--symbols", help="comma-separated; overrides --universe")
    p.add_argument("--start", default="2005-01-01")
    p.add_argument("--end")
    p.add_argument("--force", action="store_true")
    p.set_defaults(fn=cmd_download)

    p = sub.add_parser("update", help="incremental update of cached symbols")
    p.add_argument("--symbols")
    p.add_argument("--end")
    p.set_defaults(fn=cmd_update)

    p = sub.add_parser("quality", help="quality checks: table and JSON")
    p.add_argument("--path", help="check this raw file instead of the cache")
    p.add_argument("--symbols")
    p.add_argument("--start", help="only rows from this date")
    p.add_argument("--json", help="where to write the JSON (default <cache>/quality.json)")
    p.add_argument("--top", type=int, default=25)
    p.set_defaults(fn=cmd_quality)

    p = sub.add_parser("sql", help="DuckDB SQL over the cache (views: prices, manifest)")
    p.add_argument("query")
    p.add_argument("--csv", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(fn=cmd_sql)

    p = sub.add_parser("manifest", help="the cache's manifest, verified against its files")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--repair", action="store_true", help="first put right what a killed writer left")
    p.set_defaults(fn=cmd_manifest)
    return ap


def run(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = [a for a in argv if OVERRIDE.match(a)]
    rest = [a for a in argv if a not in overrides]
    args = parser().parse_args(rest)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    cfg = load_config(overrides)
    return int(args.fn(args, cfg) or 0)


def main() -> None:
    raise SystemExit(run())


if __name__ == "__main__":
    main()
