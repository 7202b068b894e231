"""The feature registry: a plain dict filled by the `@feature` decorator.

A feature is a function Panel -> float [T, N] array whose value at row t uses only rows <= t (causal).
`lookback` is the number of sessions of history it needs before its value is defined. `reads` names the
reference series it reads besides the stock's own bars: "market" (SPY, else the equal-weight index) and/or
"sector" (the stock's sector ETF, SPY fallback); the freshness gate (features/freshness.py) checks those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from deepq.data.panel import Panel

FeatureFn = Callable[[Panel], np.ndarray]


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    family: str
    lookback: int
    description: str
    fn: FeatureFn
    reads: tuple[str, ...] = ()


READS = ("market", "sector")
REGISTRY: dict[str, FeatureSpec] = {}


def feature(
    name: str, family: str, lookback: int, description: str = "", reads: tuple[str, ...] = ()
) -> Callable[[FeatureFn], FeatureFn]:
    unknown = set(reads) - set(READS)
    if unknown:
        raise ValueError(f"feature {name!r}: unknown reference series {sorted(unknown)}; known: {READS}")

    def register(fn: FeatureFn) -> FeatureFn:
        if name in REGISTRY:
            raise ValueError(
                f"feature {name!r} is registered twice ({REGISTRY[name].fn.__module__} and {fn.__module__})"
            )
        REGISTRY[name] = FeatureSpec(
            name, family, lookback, description or (fn.__doc__ or "").strip(), fn, tuple(reads)
        )
        return fn

    return register


def _ensure_loaded() -> None:
    # Importing the family modules fills REGISTRY; kept here so callers need one import.
    from deepq.features import library  # noqa: F401


def registry() -> dict[str, FeatureSpec]:
    _ensure_loaded()
    return REGISTRY


def resolve(
    names: Iterable[str] | None = None,
    families: Iterable[str] | None = None,
    sources: object = None,
) -> list[FeatureSpec]:
    """Feature specs by explicit names and/or whole families; `None` for both means every feature.

    `sources` (the `features.sources` list of FeatureSource configs) is not a registry selection: it sits in
    the same config node so one node describes a run's inputs, and `tasks.common.build_panel_data` appends
    those as-of-joined columns after these features. Accepted here, so instantiating the node still works."""
    reg = registry()
    names = list(names or [])
    families = list(families or [])
    unknown = [n for n in names if n not in reg]
    if unknown:
        raise KeyError(f"unknown feature(s) {unknown}; `deepq features list` shows the {len(reg)} registered")
    known_families = {s.family for s in reg.values()}
    bad_families = [f for f in families if f not in known_families]
    if bad_families:
        raise KeyError(f"unknown feature family(ies) {bad_families}; known: {sorted(known_families)}")
    if not names and not families:
        return list(reg.values())
    chosen = dict.fromkeys(names)
    for spec in reg.values():
        if spec.family in families:
            chosen.setdefault(spec.name)
    return [reg[n] for n in chosen]


_GROUP = 16  # features staged together: 16 float32 = one 64-byte cache line of the [T, N, F] output
_ROWS = 1 << 16  # cells per transposing copy, so both sides of the copy stay in cache


def compute_features(panel: Panel, specs: Sequence[FeatureSpec]) -> np.ndarray:
    """Stack the features into one float32 [T, N, F] array (NaN where undefined).

    Writing one feature straight into out[:, :, j] touches a cache line per cell for every feature; instead
    up to 16 features are staged feature-major and copied into the output a block of cells at a time."""
    T, N = panel.shape
    F = len(specs)
    out = np.empty((T, N, F), dtype=np.float32)
    flat = out.reshape(T * N, F)
    stage = np.empty((min(_GROUP, max(F, 1)), T, N), dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for j0 in range(0, F, _GROUP):
            group = specs[j0 : j0 + _GROUP]
            for k, spec in enumerate(group):
                values = np.asarray(spec.fn(panel))
                if values.shape != (T, N):
                    raise ValueError(
                        f"feature {spec.name!r} returned shape {values.shape}, expected {(T, N)}"
                    )
                col = stage[k]
                col[...] = values  # cast to float32 once; a value beyond float32's range becomes inf here
                inf = np.isinf(col)
                if inf.any():
                    col[inf] = np.nan
            g = len(group)
            staged = stage[:g].reshape(g, T * N)
            for r0 in range(0, T * N, _ROWS):
                flat[r0 : r0 + _ROWS, j0 : j0 + g] = staged[:, r0 : r0 + _ROWS].T
    return out
