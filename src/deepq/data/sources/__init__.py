"""Market data sources: each turns a vendor's answer into cached rows (deepq.data.store.CACHE_COLUMNS).

`Source.fetch(symbol, start, end)` returns one symbol's adjusted daily bars in [start, end] or raises a
`SourceError` (deepq.data.http) whose message names the source and symbol and never a key. The vendors:
yahoo (yfinance), alphavantage, polygon, tiingo (IEX-sourced prices; IEX Cloud closed in 2024) and local
(pre-downloaded Parquet/CSV, the emergency source). `FallbackChain` (deepq.data.chain) tries them in order.
"""

from deepq.data.sources.base import HttpSource, Source

__all__ = ["HttpSource", "Source"]
