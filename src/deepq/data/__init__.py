"""Market data: sources -> cache -> panel (docs/data.md).

panel (Panel, load_panel), store (cached row format, PriceStore), cache (ParquetStore, load_cache_panel),
pg (PostgresStore), sources/ (yahoo, alphavantage, polygon, tiingo, local), http (rate limit, retries, redact),
chain (FallbackChain), sync (download, update, import), actions (adjustment), calendar (XNYS, gap policy),
quality (checks, cleaning), universe (point-in-time membership, symbol lists), sql (DuckDB).
Submodules are imported on use, so `import deepq.data.panel` stays cheap.
"""
