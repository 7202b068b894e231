"""SQL over the Parquet cache with DuckDB: views `prices` (every cached row) and `manifest`.

    deepq data sql "select symbol, count(*) from prices group by 1 order by 2 desc limit 5"

DuckDB reads the per-symbol files in place (no copy, no server); the views are recreated per connection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from deepq.data.panel import DataError


def connect(root: str | Path, memory_limit: str | None = None) -> Any:
    """An in-memory DuckDB connection with the cache's views."""
    import duckdb

    root = Path(root)
    con = duckdb.connect(":memory:")
    if memory_limit:
        con.execute(f"SET memory_limit='{memory_limit}'")
    prices = root / "prices"
    if not prices.is_dir() or not any(prices.glob("*.parquet")):
        raise DataError(f"cache {root} is empty: run `deepq data import` or `deepq data download` first")
    glob = str(prices / "*.parquet").replace("'", "''")
    con.execute(f"CREATE VIEW prices AS SELECT * FROM read_parquet('{glob}', union_by_name = true)")
    manifest = root / "manifest.parquet"
    if manifest.exists():
        con.execute(
            f"CREATE VIEW manifest AS SELECT * FROM read_parquet('{str(manifest).replace(chr(39), chr(39) * 2)}')"
        )
    return con


def query(root: str | Path, sql: str) -> pd.DataFrame:
    con = connect(root)
    try:
        return con.execute(sql).fetch_df()
    finally:
        con.close()
