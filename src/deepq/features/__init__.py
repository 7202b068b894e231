"""Feature registry, families and store. `compute(panel, names)` is the notebook entry point."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from deepq.data.panel import Panel


def compute(
    panel: Panel, names: Sequence[str] | None = None, families: Sequence[str] | None = None
) -> pd.DataFrame:
    """Registered features (by name and/or family; none = all) as a frame indexed by (date, symbol), one
    column per feature, NaN while a feature warms up. The same computation training runs (causal)."""
    import numpy as np
    import pandas as pd

    from deepq.features.registry import compute_features, resolve

    specs = resolve(names, families)
    values = compute_features(panel, specs)  # float32 [T, N, F]
    T, N, F = values.shape
    index = pd.MultiIndex.from_product(
        [pd.to_datetime(panel.dates), list(panel.symbols)], names=["date", "symbol"]
    )
    frame = pd.DataFrame(values.reshape(T * N, F), index=index, columns=[s.name for s in specs])
    present = np.isfinite(panel["close"]).reshape(-1)  # rows for bars only, not every empty cell
    return frame[present]
