"""Helpers shared by the family modules: per-symbol TA-Lib application, memoised intermediates, market/sector series.

TA-Lib works on one 1-D float64 series at a time, so `per_symbol` runs it column by column over the rows
where the symbol has a bar (compressed, so a gap never poisons a recursive indicator) and scatters the result
back onto the [T, N] grid. Each output at row t depends on rows <= t only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import talib.abstract

from deepq.data.panel import Panel
from deepq.features import ops

MARKET_SYMBOL = "SPY"
# GICS sector -> its SPDR sector ETF (the sample and the shared data ship all eleven)
SECTOR_ETF: dict[str, str] = {
    "Information Technology": "XLK",
    "Financials": "XLF",
    "Energy": "XLE",
    "Health Care": "XLV",
    "Industrials": "XLI",
    "Consumer Staples": "XLP",
    "Consumer Discretionary": "XLY",
    "Utilities": "XLU",
    "Materials": "XLB",
    "Real Estate": "XLRE",
    "Communication Services": "XLC",
}

_MEMO: OrderedDict[tuple[int, Hashable], tuple[np.ndarray, Any]] = OrderedDict()
_MEMO_SIZE = 48


def memo(panel: Panel, key: Hashable, compute: Callable[[], Any]) -> Any:
    """Memoise an intermediate (a TA-Lib call shared by several features) per panel.

    Keyed by the identity of the panel's close array; the entry keeps a reference to that array, so the id
    cannot be reused by another panel while the entry lives.
    """
    close = panel["close"]
    k = (id(close), key)
    hit = _MEMO.get(k)
    if hit is not None and hit[0] is close:
        _MEMO.move_to_end(k)
        return hit[1]
    value = compute()
    _MEMO[k] = (close, value)
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return value


def bind(fn: Callable[[Panel, int], np.ndarray], k: int) -> Callable[[Panel], np.ndarray]:
    """Fix a window/horizon argument when registering features in a loop."""
    return lambda p: fn(p, k)


def talib_lookback(func: str, **params: Any) -> int:
    """TA-Lib's own count of leading rows its function leaves undefined."""
    fn = talib.abstract.Function(func)  # type: ignore[attr-defined]
    if params:
        fn.set_parameters(params)
    return int(fn.lookback)


def _symbol_rows(panel: Panel, inputs: tuple[str, ...]) -> list[tuple[np.ndarray | slice, int]]:
    """Per symbol: the rows where every input is finite (a slice when they are one contiguous run, the
    usual case) and their count."""

    def compute() -> list[tuple[np.ndarray | slice, int]]:
        valid = np.logical_and.reduce([np.isfinite(panel[name]) for name in inputs]).T
        out: list[tuple[np.ndarray | slice, int]] = []
        for row in valid:
            idx = np.flatnonzero(row)
            if len(idx) and idx[-1] - idx[0] + 1 == len(idx):
                out.append((slice(int(idx[0]), int(idx[-1]) + 1), len(idx)))
            else:
                out.append((idx, len(idx)))
        return out

    return memo(panel, ("symbol_rows", inputs), compute)


def columns_major(panel: Panel, field: str) -> np.ndarray:
    """[N, T] float64 C-contiguous copy of a field, so one symbol's series is a contiguous row (TA-Lib reads
    it without a gather, as a loop over per-symbol DataFrames would)."""
    return memo(
        panel, ("columns_major", field), lambda: np.ascontiguousarray(panel[field].T, dtype=np.float64)
    )


def per_symbol(
    panel: Panel, fn: Callable[..., Any], inputs: tuple[str, ...], n_out: int = 1
) -> tuple[np.ndarray, ...]:
    """Apply a 1-D series function to each symbol's rows with a bar; returns `n_out` [T, N] arrays."""
    arrays = [columns_major(panel, name) for name in inputs]
    T, N = panel.shape
    outs = tuple(np.full((N, T), np.nan) for _ in range(n_out))
    for j, (rows, n) in enumerate(_symbol_rows(panel, inputs)):
        if n == 0:
            continue
        res = fn(*(a[j, rows] for a in arrays))
        res = res if isinstance(res, tuple | list) else (res,)
        for out, r in zip(outs, res, strict=False):
            out[j, rows] = r
    return tuple(np.ascontiguousarray(o.T) for o in outs)


def talib_call(panel: Panel, func: str, inputs: tuple[str, ...], **params: Any) -> tuple[np.ndarray, ...]:
    """A TA-Lib function applied per symbol, memoised; one [T, N] array per TA-Lib output."""
    import talib

    f = getattr(talib, func)
    n_out = len(talib.abstract.Function(func).output_names)  # type: ignore[attr-defined]

    def run() -> tuple[np.ndarray, ...]:
        return per_symbol(panel, lambda *cols: f(*cols, **params), inputs, n_out)

    return memo(panel, ("talib", func, inputs, tuple(sorted(params.items()))), run)


def close_log_return(panel: Panel, k: int) -> np.ndarray:
    """[T, N] k-session log return of the close, memoised: dozens of features start from the same returns.
    Shared: callers must not modify it in place."""
    return memo(panel, ("close_log_return", k), lambda: ops.log_return(panel["close"], k))


def ffill(a: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Forward-fill down the rows (causal), at most `limit` consecutive rows when given."""
    return ops.frame(a).ffill(limit=limit).to_numpy()


def reference_close(panel: Panel, symbol: str) -> np.ndarray:
    """[T] close of a reference series (SPY, a sector ETF), carried forward over at most `panel.fill_limit`
    sessions without a bar: a series that stops turns NaN, so every feature reading it does too."""
    return memo(
        panel,
        ("reference_close", symbol, panel.fill_limit),
        lambda: ffill(panel["close"][:, panel.symbol_index(symbol)][:, None], panel.fill_limit)[:, 0],
    )


def market_close(panel: Panel) -> np.ndarray:
    """[T] SPY's close (bounded fill), or an equal-weight index of the stocks' returns when SPY is not in
    the panel (documented fallback). The one market series every family reads."""
    if MARKET_SYMBOL in panel.symbols:
        return reference_close(panel, MARKET_SYMBOL)

    def equal_weight() -> np.ndarray:
        r = np.nan_to_num(close_log_return(panel, 1))
        return np.exp(np.cumsum(np.nanmean(np.where(panel.mask(("stock",)), r, np.nan), axis=1)))

    return memo(panel, "equal_weight_index", equal_weight)


def benchmark_log_return(panel: Panel, k: int) -> np.ndarray:
    """[T, N] k-session log return of each symbol's sector ETF (close carried forward `panel.fill_limit`
    sessions at most).

    Documented fallback: the market's return (SPY, else the equal-weight index) wherever the sector is
    unknown, its ETF is absent from the panel, or the ETF has no k-session history yet (e.g. XLC before
    2018). Mixing happens per cell on returns, never on price levels, so a switch creates no jump. An ETF
    that stops (no bar for more than `panel.fill_limit` sessions) gives NaN, not the market's return.
    """

    def compute() -> np.ndarray:
        T, N = panel.shape
        mkt = ops.log_return(market_close(panel)[:, None], k)[:, 0]
        out = np.repeat(mkt[:, None], N, axis=1)
        etf_ret: dict[str, np.ndarray] = {}
        for j, sym in enumerate(panel.symbols):
            etf = SECTOR_ETF.get(panel.sectors.get(sym, ""))
            if etf is None or etf not in panel.symbols:
                continue
            if etf not in etf_ret:
                close = reference_close(panel, etf)
                r = ops.log_return(close[:, None], k)[:, 0]
                seen = np.flatnonzero(np.isfinite(close))
                # the market stands in until the ETF has k sessions of history; once it has, a gap past the
                # fill limit (the ETF stopped) is NaN, never a silent switch to the market
                young = np.arange(T) < (seen[0] + k if len(seen) else T)
                etf_ret[etf] = np.where(young & ~np.isfinite(r), mkt, r)
            out[:, j] = etf_ret[etf]
        return out

    return memo(panel, ("benchmark_log_return", k, panel.fill_limit), compute)


def stock_only(panel: Panel, a: np.ndarray) -> np.ndarray:
    return np.where(panel.mask(("stock",))[None, :], a, np.nan)
