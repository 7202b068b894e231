"""The feature registry: a plain dict filled by the `@feature` decorator.

A feature is a function Panel -> float [T, N] array whose value at row t uses only rows <= t (causal).
`lookback` is the number of sessions of history it needs before its value is defined.
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


REGISTRY: dict[str, FeatureSpec] = {}


def feature(name: str, family: str, lookback: int, description: str = "") -> Callable[[FeatureFn], FeatureFn]:
    def register(fn: FeatureFn) -> FeatureFn:
        if name in REGISTRY:
            raise ValueError(
                f"feature {name!r} is registered twice ({REGISTRY[name].fn.__module__} and {fn.__module__})"
            )
        REGISTRY[name] = FeatureSpec(name, family, lookback, description or (fn.__doc__ or "").strip(), fn)
        return fn

    return register


def _ensure_loaded() -> None:
    # Importing the family modules fills REGISTRY; kept here so callers need one import.
    from deepq.features import library  # noqa: F401


def registry() -> dict[str, FeatureSpec]:
    _ensure_loaded()
    return REGISTRY


def resolve(names: Iterable[str] | None = None, families: Iterable[str] | None = None) -> list[FeatureSpec]:
    """Feature specs by explicit names and/or whole families; `None` for both means every feature."""
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


def compute_features(panel: Panel, specs: Sequence[FeatureSpec]) -> np.ndarray:
    """Stack the features into one float32 [T, N, F] array (NaN where undefined)."""
    T, N = panel.shape
    out = np.empty((T, N, len(specs)), dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, spec in enumerate(specs):
            values = np.asarray(spec.fn(panel), dtype=np.float64)
            if values.shape != (T, N):
                raise ValueError(f"feature {spec.name!r} returned shape {values.shape}, expected {(T, N)}")
            values[~np.isfinite(values)] = np.nan
            out[:, :, j] = values
    return out
