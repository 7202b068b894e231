"""Reliability section `frames`: generated malformed price frames through deepq's real import and panel loader.

Each frame is two symbols' real sample rows (`data/sample`, 40 sessions each), one of them malformed by a
hypothesis draw (`@given(st.data())`, derandomized, no example database: the same frames every run). The
frame is written as the Parquet or CSV file a user would hand deepq (the draw picks which), then pushed
through both entry points that read such files:

- import: `deepq data import`'s path (`LocalSource` + the configured `Syncer.import_local`, the real
  `conf/sources/default.yaml` cleaning and the XNYS calendar) into a fresh `ParquetStore`, then
  `load_cache_panel` of that cache (what `data=cache` training reads);
- panel: `load_panel(file)` (what `data=sample`-style configs read).

Per entry point a frame is *accepted* (no exception; then the panel must be sane: dates sorted and unique,
only days the file holds, symbols non-empty printable strings, prices finite and > 0 or NaN, volume finite
and >= 0 or NaN), *refused* (a deepq
`DataError` / deepq `ValueError` subclass whose message names the symbol and the field), or *unhandled*
(any other exception, a refusal that does not name the symbol or the field, or an accepted panel that is
not sane). A frame-wide malformation (a missing column, an empty frame) has no one symbol: its refusal must
name the field and either the file or a symbol.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from deepq.data.cache import load_cache_panel
from deepq.data.panel import REQUIRED_COLUMNS, DataError, Panel, load_panel, load_prices
from deepq.data.sources.local import LocalSource

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "prices.parquet"
BASE_SYMBOLS = ("AAPL", "JPM")
SESSIONS = 40
PRICES = ("open", "high", "low", "close")
FRAMES = {"small": 100, "full": 1200}  # over all families


@dataclass
class Case:
    """One malformed frame: what a refusal must name, and where it goes."""

    frame: pd.DataFrame
    field: str | tuple[str, ...]  # what a refusal must name (one of them)
    symbol: str | None  # the symbol it must name; None: frame-wide (the file or any symbol will do)
    fmt: str  # parquet | csv
    days: frozenset | None = None  # the days an accepted panel may hold (None: the base rows' days)


@dataclass
class Tally:
    accepted: int = 0
    refused: int = 0
    named: int = 0
    unhandled: int = 0
    examples: list[str] = field(default_factory=list)  # the first unhandled outcomes, for the note


# ---- the base rows and the malformations ------------------------------------------------------------------


def base_rows() -> pd.DataFrame:
    long = load_prices(SAMPLE, symbols=list(BASE_SYMBOLS), start="2019-01-01")
    long = long.groupby("symbol", group_keys=False).head(SESSIONS)
    return long[list(REQUIRED_COLUMNS)].reset_index(drop=True)


def target_rows(df: pd.DataFrame, data: st.DataObject, sym: str) -> np.ndarray:
    """Some of the target symbol's row labels (at least one)."""
    idx = df.index[df["symbol"] == sym].to_numpy()
    k = data.draw(st.integers(1, max(1, len(idx) // 4)), label="rows")
    start = data.draw(st.integers(0, len(idx) - k), label="first row")
    return idx[start : start + k]


def pick(data: st.DataObject, base: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    sym = data.draw(st.sampled_from(BASE_SYMBOLS), label="symbol")
    return base.copy(), sym


def missing_columns(data: st.DataObject, base: pd.DataFrame) -> Case:
    df, _ = pick(data, base)
    drop = data.draw(st.lists(st.sampled_from(REQUIRED_COLUMNS), min_size=1, max_size=3, unique=True))
    return Case(df.drop(columns=drop), tuple(drop), None, fmt(data))


def string_prices(data: st.DataObject, base: pd.DataFrame) -> Case:
    df, sym = pick(data, base)
    col = data.draw(st.sampled_from(PRICES))
    junk = data.draw(st.sampled_from(["n/a", "1,234.5", "abc", "$12", "12..5", "-", "null?", "1e", "∞"]))
    rows = target_rows(df, data, sym)
    df[col] = df[col].astype(object)
    df.loc[rows, col] = junk
    return Case(df, col, sym, fmt(data))


def nonfinite_prices(data: st.DataObject, base: pd.DataFrame) -> Case:
    df, sym = pick(data, base)
    col = data.draw(st.sampled_from(PRICES))
    value = data.draw(st.sampled_from([math.inf, -math.inf, math.nan]))
    df.loc[target_rows(df, data, sym), col] = value
    return Case(df, col, sym, fmt(data))


def negative_prices(data: st.DataObject, base: pd.DataFrame) -> Case:
    df, sym = pick(data, base)
    col = data.draw(st.sampled_from(PRICES))
    value = data.draw(st.floats(-1e9, 0.0, allow_nan=False))
    df.loc[target_rows(df, data, sym), col] = value
    return Case(df, col, sym, fmt(data))


def high_below_low(data: st.DataObject, base: pd.DataFrame) -> Case:
    df, sym = pick(data, base)
    rows = target_rows(df, data, sym)
    shrink = data.draw(st.floats(0.5, 0.99))
    df.loc[rows, "high"] = df.loc[rows, "low"] * shrink
    return Case(df, "high", sym, fmt(data))


def duplicated_dates(data: st.DataObject, base: pd.DataFrame) -> Case:
    df, sym = pick(data, base)
    rows = target_rows(df, data, sym)
    dup = df.loc[rows].copy()
    if data.draw(st.booleans(), label="different values"):
        dup["close"] = dup["close"] * 1.01
    return Case(pd.concat([df, dup], ignore_index=True), "date", sym, fmt(data))


def unsorted_dates(data: st.DataObject, base: pd.DataFrame) -> Case:
    df, sym = pick(data, base)
    seed = data.draw(st.integers(0, 2**32 - 1), label="shuffle")
    return Case(df.sample(frac=1.0, random_state=seed).reset_index(drop=True), "date", sym, fmt(data))


def timezones(data: st.DataObject, base: pd.DataFrame) -> Case:
    """Aware dates (one zone), or aware and naive ones mixed in one file (CSV: text with and without offsets)."""
    df, sym = pick(data, base)
    tz = data.draw(st.sampled_from(["UTC", "America/New_York", "Asia/Tokyo", "Europe/London"]))
    aware = pd.DatetimeIndex(df["date"]).tz_localize(tz)
    if data.draw(st.booleans(), label="mixed"):
        text = pd.Series([d.isoformat() for d in aware], index=df.index, dtype=object)
        rows = target_rows(df, data, sym)
        text.loc[rows] = df.loc[rows, "date"].dt.strftime("%Y-%m-%d")
        df["date"] = text
        return Case(df, "date", sym, data.draw(st.sampled_from(["csv", "parquet"])))
    df["date"] = aware
    return Case(df, "date", sym, fmt(data))


def empty_frames(data: st.DataObject, base: pd.DataFrame) -> Case:
    df, _ = pick(data, base)
    kind = data.draw(st.sampled_from(["no rows", "no columns", "only headers of some"]))
    if kind == "no rows":
        out = df.iloc[:0]
    elif kind == "no columns":
        out = pd.DataFrame(index=range(data.draw(st.integers(0, 5))))
    else:
        out = df.iloc[:0, : data.draw(st.integers(1, len(df.columns) - 1))]
    gone = tuple(c for c in REQUIRED_COLUMNS if c not in out.columns)
    return Case(out, ("empty", "no price rows", "no columns", *gone), None, fmt(data))


BAD_NAMES = ["", " ", "  AAPL", "AA PL", "../../etc/passwd", "a/b", "A\x00B", "\n", "X" * 300, "🚀", "\t"]


def bad_symbols(data: st.DataObject, base: pd.DataFrame) -> Case:
    df, sym = pick(data, base)
    rows = df.index[df["symbol"] == sym]
    name = data.draw(st.one_of(st.sampled_from(BAD_NAMES), st.none(), st.just(math.nan)), label="name")
    if data.draw(st.booleans(), label="some rows only"):
        rows = target_rows(df, data, sym)
    df["symbol"] = df["symbol"].astype(object)
    df.loc[rows, "symbol"] = name
    return Case(df, "symbol", None, fmt(data))


def negative_volume(data: st.DataObject, base: pd.DataFrame) -> Case:
    df, sym = pick(data, base)
    df["volume"] = df["volume"].astype("float64")
    df.loc[target_rows(df, data, sym), "volume"] = data.draw(st.floats(-1e12, -1e-3, allow_nan=False))
    return Case(df, "volume", sym, fmt(data))


def text_volume(data: st.DataObject, base: pd.DataFrame) -> Case:
    df, sym = pick(data, base)
    junk = data.draw(st.sampled_from(["1.2M", "n/a", "1,000", "lots", "inf?", "--"]))
    df["volume"] = df["volume"].astype(object)
    df.loc[target_rows(df, data, sym), "volume"] = junk
    return Case(df, "volume", sym, fmt(data))


def dates_as_text(data: st.DataObject, base: pd.DataFrame) -> Case:
    """Dates as text: other formats of the right dates, and text that is no date at all."""
    df, sym = pick(data, base)
    style = data.draw(st.sampled_from(["%Y-%m-%d", "%Y/%m/%d", "%d.%m.%Y", "%b %d %Y", "junk", "2019-13-45"]))
    text = df["date"].dt.strftime("%Y-%m-%d").astype(object)
    rows = target_rows(df, data, sym)
    if style == "junk":
        text.loc[rows] = data.draw(st.sampled_from(["not a date", "", "yesterday", "0", "NaT?"]))
    elif style == "2019-13-45":
        text.loc[rows] = "2019-13-45"
    else:  # every date in another format: frame-wide (a refusal names whichever symbol comes first)
        text, sym = df["date"].dt.strftime(style).astype(object), None
    df["date"] = text
    return Case(df, "date", sym, fmt(data))


def out_of_range_years(data: st.DataObject, base: pd.DataFrame) -> Case:
    """Years a nanosecond timestamp cannot hold (before 1677, after 2262), years to come, or long past ones
    (representable: accepted, and then the panel must hold exactly the file's days)."""
    df, sym = pick(data, base)
    this = pd.Timestamp.now().year
    year = data.draw(
        st.one_of(
            st.integers(1, 1676),
            st.integers(2263, 9999),
            st.integers(this + 2, 2262),
            st.integers(1800, 1899),
        )
    )
    rows = target_rows(df, data, sym)
    text = df["date"].dt.strftime("%Y-%m-%d").astype(object)
    text.loc[rows] = [f"{year:04d}-{d:%m-%d}" for d in df.loc[rows, "date"]]
    df["date"] = text
    days = None
    if 1800 <= year <= 1899:
        days = frozenset(pd.to_datetime(text).to_numpy().astype("datetime64[D]").tolist())
    return Case(df, "date", sym, data.draw(st.sampled_from(["csv", "parquet"])), days)


def fmt(data: st.DataObject) -> str:
    return data.draw(st.sampled_from(["parquet", "csv"]), label="file format")


FAMILIES: dict[str, Callable[[st.DataObject, pd.DataFrame], Case]] = {
    "missing columns": missing_columns,
    "text in a price column": string_prices,
    "NaN / inf prices": nonfinite_prices,
    "negative or zero prices": negative_prices,
    "high below low": high_below_low,
    "duplicated dates": duplicated_dates,
    "unsorted dates": unsorted_dates,
    "tz-aware / mixed dates": timezones,
    "empty frame": empty_frames,
    "bad or empty symbol names": bad_symbols,
    "negative volume": negative_volume,
    "text in volume": text_volume,
    "dates as text": dates_as_text,
    "out-of-range years": out_of_range_years,
}


# ---- the entry points and the verdicts --------------------------------------------------------------------


class Importer:
    """`deepq data import`'s path with the real configuration, into a fresh cache per frame."""

    def __init__(self, workdir: Path):
        from deepq.tasks.data import load_config, store_and_sessions, syncer

        self.workdir = workdir
        cfg = load_config([f"data.root={workdir / 'cache0'}"])
        store, days = store_and_sessions(cfg)  # the XNYS calendar, memoised once
        self.syncer = syncer(cfg, store, days, None)  # its policies read once; the store is set per frame

    def __call__(self, path: Path, n: int) -> Panel:
        from deepq.data.cache import ParquetStore

        root = self.workdir / f"cache{n}"
        shutil.rmtree(root, ignore_errors=True)
        self.syncer.store = ParquetStore(root)
        try:
            self.syncer.import_local(LocalSource(path))
            return load_cache_panel(root)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def write(case: Case, path: Path) -> Path:
    out = path.with_suffix(f".{case.fmt}")
    if case.fmt == "csv":
        case.frame.to_csv(out, index=False)
    else:  # a Parquet column has one type: a column with text in it is a text column
        frame = case.frame.copy()
        for col in frame.columns:
            if frame[col].dtype == object:
                frame[col] = frame[col].map(lambda v: v if v is None or v != v else str(v))
        frame.to_parquet(out, index=False)
    return out


def is_deepq_refusal(e: BaseException) -> bool:
    return isinstance(e, DataError) or (
        isinstance(e, ValueError) and type(e).__module__.split(".")[0] == "deepq"
    )


def names_it(msg: str, case: Case, where: tuple[str, ...]) -> bool:
    """The refusal names the field, and the symbol (frame-wide: the file, the cache or a symbol)."""
    fields = (case.field,) if isinstance(case.field, str) else case.field
    if not any(f in msg for f in fields):
        return False
    if case.symbol is not None:
        return case.symbol in msg
    symbols = {
        s for s in case.frame.get("symbol", pd.Series(dtype=object)) if isinstance(s, str) and s.strip()
    }
    return any(w in msg for w in where) or any(s in msg for s in symbols)


def insane(panel: Panel, days: frozenset) -> str | None:
    """Why an accepted panel is not sane, or None."""
    d = panel.dates
    if len(d) and not (np.diff(d.astype("int64")) > 0).all():
        return "dates not sorted and unique"
    if not set(d.tolist()) <= days:
        return f"days the file does not hold, e.g. {sorted(set(d.tolist()) - days)[0]}"
    for s in panel.symbols:
        if not isinstance(s, str) or not s.strip() or s != s.strip() or not s.isprintable():
            return f"symbol {s!r} in the panel"
    for name in PRICES:
        v = panel[name]
        if np.isinf(v).any() or (v[~np.isnan(v)] <= 0).any():
            return f"{name}: non-finite or non-positive values"
    vol = panel["volume"]
    if np.isinf(vol).any() or (vol[~np.isnan(vol)] < 0).any():
        return "volume: non-finite or negative values"
    return None


def verdict(
    load: Callable[[], Panel], case: Case, where: tuple[str, ...], days: frozenset
) -> tuple[str, str]:
    """(accepted | refused | unnamed | unhandled, what happened)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            panel = load()
    except Exception as e:  # noqa: BLE001 - classifying every exception is the point
        what = f"{type(e).__name__}: {e}"[:160]
        if not is_deepq_refusal(e):
            return "unhandled", what
        return ("refused" if names_it(str(e), case, where) else "unnamed"), what
    why = insane(panel, case.days or days)
    return ("unhandled", f"accepted, not sane: {why}") if why else ("accepted", "")


def run_family(name: str, make: Callable, n: int, base: pd.DataFrame, importer: Importer, tmp: Path) -> dict:
    tally = {"import": Tally(), "panel": Tally()}
    counter = [0]
    days = frozenset(base["date"].to_numpy().astype("datetime64[D]").tolist())
    frames = [0, 0]  # generated, handled at both entry points

    @settings(
        max_examples=n,
        database=None,
        derandomize=True,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def one(data: st.DataObject) -> None:
        case = make(data, base)
        counter[0] += 1
        path = write(case, tmp / f"frame{counter[0]}")
        loads = {
            "import": lambda: importer(path, counter[0]),
            "panel": lambda: load_panel(path),
        }
        handled = True
        for entry, load in loads.items():
            t = tally[entry]
            outcome, what = verdict(load, case, (path.name, f"cache{counter[0]}"), days)
            if outcome == "accepted":
                t.accepted += 1
            elif outcome == "refused":
                t.refused += 1
                t.named += 1
            else:
                handled = False
                t.refused += outcome == "unnamed"
                t.unhandled += 1
                if len(t.examples) < 2:
                    t.examples.append(f"{entry} {case.fmt}: {what}")
        frames[0] += 1
        frames[1] += handled
        path.unlink()

    t0 = time.perf_counter()
    one()
    wall = time.perf_counter() - t0
    imp, pan = tally["import"], tally["panel"]
    refused, named = imp.refused + pan.refused, imp.named + pan.named
    row: dict[str, Any] = {
        "section": "frames",
        "case": name,
        "expected": frames[0],
        "got": frames[1],
        "errors": refused,
        "unhandled": frames[0] - frames[1],
        "accepted": f"{imp.accepted}/{pan.accepted}",
        "refused": f"{imp.refused}/{pan.refused}",
        "named": f"{named}/{refused}" if refused else "-",
        "wall_s": wall,
        "ok": frames[0] == frames[1] and named == refused,
    }
    notes = imp.examples + pan.examples
    if notes:
        row["note"] = "; ".join(notes)
    return row


def run(scale: str, workdir: Path) -> list[dict]:
    per_family = max(1, FRAMES[scale] // len(FAMILIES))
    logging.getLogger("deepq").setLevel(logging.ERROR)
    base = base_rows()
    importer = Importer(workdir)
    tmp = workdir / "frames"
    tmp.mkdir(parents=True, exist_ok=True)
    return [run_family(name, make, per_family, base, importer, tmp) for name, make in FAMILIES.items()]
