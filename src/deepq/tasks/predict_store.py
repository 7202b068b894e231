"""Predictions appended to PostgreSQL (`deepq predict --pg-dsn-env VAR`), beside the price store (data/pg.py).

One table keyed by (model, date, symbol): a rerun of the same scoring inserts nothing twice
(ON CONFLICT DO NOTHING), so a scheduler may retry freely. One transaction per call.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
COLUMNS = ("model", "date", "symbol", "stage", "in_universe", "pred", "score", "up", "data_fingerprint")


def _py(v: Any) -> Any:
    if isinstance(v, float | np.floating) and not np.isfinite(v):
        return None
    return v.item() if isinstance(v, np.generic) else v


def append_postgres(dsn: str, frame: pd.DataFrame, table: str = "deepq_predictions") -> int:
    """Insert the frame's rows that are not there yet; returns how many were new."""
    import psycopg  # optional: only with a configured database

    if not _IDENT.match(table):
        raise ValueError(f"table name {table!r} must be a lower-case SQL identifier")
    ddl = (
        f"CREATE TABLE IF NOT EXISTS {table} (model text NOT NULL, date date NOT NULL, symbol text NOT NULL, "
        "stage text, in_universe boolean NOT NULL, pred double precision, score double precision, "
        "up double precision, data_fingerprint text, PRIMARY KEY (model, date, symbol))"
    )
    rows = [
        tuple(_py(v) for v in r)
        for r in frame.assign(date=frame["date"].dt.date)[list(COLUMNS)].itertuples(index=False)
    ]
    sql = f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) ON CONFLICT DO NOTHING"
    with psycopg.connect(dsn, autocommit=False) as con, con.cursor() as cur:
        cur.execute(ddl)
        before = cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
        cur.executemany(sql, rows)
        after = cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
        con.commit()
    return int(after - before)
