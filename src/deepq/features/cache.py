"""Parquet cache of computed feature arrays, keyed by feature-set hash and data fingerprint.

The key changes whenever a feature's definition can change its values (the feature names, their order, and
the source of every module under deepq.features) or the panel changes (dates, symbols, every price field,
asset types and sectors). A file is written atomically (temp file + rename), so a crash or a concurrent run
never leaves a torn file; a file that does not match the panel's shape is ignored and recomputed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from deepq.data.panel import Panel
from deepq.features.registry import FeatureSpec, compute_features
from deepq.utils.io import write_atomic

CACHE_VERSION = 1


@lru_cache(maxsize=1)
def code_hash() -> str:
    """Hash of the source of every module under deepq.features (any edit invalidates cached values)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def feature_set_hash(specs: Sequence[FeatureSpec]) -> str:
    payload = {
        "version": CACHE_VERSION,
        "features": [[s.name, s.family, s.lookback] for s in specs],
        "code": code_hash(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def data_fingerprint(panel: Panel) -> str:
    h = hashlib.blake2b(digest_size=32)
    h.update(np.ascontiguousarray(panel.dates.astype("datetime64[D]").astype(np.int64)).tobytes())
    h.update("\x1f".join(panel.symbols).encode())
    for name in sorted(panel.fields):
        h.update(name.encode())
        h.update(np.ascontiguousarray(panel.fields[name], dtype=np.float64).tobytes())
    h.update(json.dumps([dict(panel.asset_types), dict(panel.sectors)], sort_keys=True).encode())
    return h.hexdigest()


def cache_path(cache_dir: str | Path, panel: Panel, specs: Sequence[FeatureSpec]) -> Path:
    # the fill limit changes what the reference-reading features hold past a series' last bar
    name = f"features-{feature_set_hash(specs)[:16]}-{data_fingerprint(panel)[:16]}-fill{panel.fill_limit}"
    return Path(cache_dir) / f"{name}.parquet"


def write_features(path: str | Path, values: np.ndarray, names: Sequence[str]) -> Path:
    """[T, N, F] float32 -> Parquet with one column per feature, rows in (date, symbol) order."""
    T, N, F = values.shape
    table = pa.table(
        {name: np.ascontiguousarray(values[:, :, j]).reshape(-1) for j, name in enumerate(names)}
    )
    meta = {b"deepq.shape": json.dumps([T, N, F]).encode()}
    table = table.replace_schema_metadata(meta)
    return write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd", compression_level=1))


def read_features(path: str | Path, shape: tuple[int, int], names: Sequence[str]) -> np.ndarray | None:
    """The cached [T, N, F] array, or None when the file is missing or does not match."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid):
        return None
    T, N = shape
    if table.num_rows != T * N or list(table.column_names) != list(names):
        return None
    out = np.empty((T, N, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        out[:, :, j] = table.column(name).to_numpy().reshape(T, N)
    return out


def cached_compute_features(
    panel: Panel, specs: Sequence[FeatureSpec], cache_dir: str | Path | None = None
) -> np.ndarray:
    """`compute_features`, read from the cache when this feature set was computed on this data before."""
    if cache_dir is None:
        return compute_features(panel, specs)
    names = [s.name for s in specs]
    path = cache_path(cache_dir, panel, specs)
    hit = read_features(path, panel.shape, names)
    if hit is not None:
        return hit
    values = compute_features(panel, specs)
    write_features(path, values, names)
    return values
