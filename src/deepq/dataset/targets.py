"""Training targets as processors: small named steps over the [T, N] label, in the manner of Qlib's
`learn_processors` (CSRankNorm, CSZScoreNorm, ...).

A return forecaster is judged on how it ranks the stocks of a date, yet most of a raw daily return is the
market's move that day, which no stock's own features explain: a model fitted to raw returns with MSE learns
the date's mean and scores every stock alike. The steps here take the market out of the target (`Excess`) and
put every date on one scale (`CSZScore`, `CSRank`), so the loss speaks of the cross-section.

Causality: every step is per date (a date's target reads only that date's labels, which the label itself
already takes from the future) or fitted on a fold's training rows only (`Winsorize(per_date=False)`). The
cross-section of a date is its sample cells with a label (`TargetContext.sample`): tradable members, never the
ETFs that feed the market features. Evaluation, portfolios and serving always use the raw realised return
(`PanelData.y_ret`); the target is what training fits, and `TargetPipeline.describe()` says which it was.

`Horizons` replaces the label with a blend of per-date normalised forward returns over several horizons (a
5- or 21-session target trades less); its label span is the longest horizon's, and the folds purge that much.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from scipy.special import ndtri

from deepq.data.panel import Panel
from deepq.dataset.labels import Execution, forward_return, label_span

MIN_NAMES = 5  # a date with fewer labelled names has no cross-section to normalise: its target is NaN
MIN_SECTOR_NAMES = 3  # a sector thinner than this on a date is measured against the equal-weight mean instead


@dataclass(frozen=True)
class TargetContext:
    panel: Panel
    sample: np.ndarray  # bool [T, N]: the cells that form a date's cross-section (samples with a label)
    horizon_days: int = 1
    execution: Execution = "next_close"
    market: str = "SPY"  # the series `Excess(by="market")` subtracts


@runtime_checkable
class TargetStep(Protocol):
    name: str

    def span(self, horizon_days: int) -> int:
        """Sessions after t that this step's target of t reads."""

    def fit(self, y: np.ndarray, rows: np.ndarray, ctx: TargetContext) -> None:
        """Learn from the training rows' cells only (most steps are per date and learn nothing)."""

    def __call__(self, y: np.ndarray, ctx: TargetContext) -> np.ndarray:
        """[T, N] target from [T, N] label; NaN outside `ctx.sample`."""


def _cs(y: np.ndarray, ctx: TargetContext) -> np.ndarray:
    """y on the date's cross-section, NaN elsewhere (and on dates with fewer than MIN_NAMES names)."""
    out = np.where(ctx.sample & np.isfinite(y), y, np.nan)
    few = np.isfinite(out).sum(axis=1) < MIN_NAMES
    out[few] = np.nan
    return out


def row_mean(a: np.ndarray) -> np.ndarray:
    """Mean of each row's finite values; NaN for a row with none (and no warning)."""
    n = np.isfinite(a).sum(axis=1)
    s = np.nansum(a, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


class _Step:
    """A step that reads the label's own span and, unless it overrides `fit`, learns nothing: each date is
    transformed from its own cross-section."""

    name = "step"

    def fit(self, y: np.ndarray, rows: np.ndarray, ctx: TargetContext) -> None:
        del y, rows, ctx

    def span(self, horizon_days: int) -> int:
        return label_span(horizon_days)


class Raw(_Step):
    """The task's label as it is (the 'before' configuration), restricted to the cross-section's cells."""

    name = "raw"

    def __call__(self, y: np.ndarray, ctx: TargetContext) -> np.ndarray:
        return np.where(ctx.sample, y, np.nan)


class Excess(_Step):
    """The label minus a benchmark of the same date and holding period: the equal-weight mean of the date's
    names (`equal`), their sector's mean (`sector`; a name with no sector, or in a sector with fewer than
    MIN_SECTOR_NAMES names that date, keeps the equal-weight mean: one name minus itself is a zero), or the
    market series' own forward return over the same horizon and execution (`market`)."""

    def __init__(self, by: Literal["equal", "sector", "market"] = "equal"):
        if by not in ("equal", "sector", "market"):
            raise ValueError(f"Excess(by={by!r}): use equal, sector or market")
        self.by = by
        self.name = f"excess_{by}"

    def __call__(self, y: np.ndarray, ctx: TargetContext) -> np.ndarray:
        a = _cs(y, ctx)
        if self.by == "equal":
            return a - row_mean(a)[:, None]
        if self.by == "market":
            if ctx.market not in ctx.panel.symbols:
                raise KeyError(
                    f"Excess(by='market'): the market series {ctx.market!r} is not in the panel; "
                    "add it to the data or use by='equal'"
                )
            m = forward_return(ctx.panel, ctx.horizon_days, ctx.execution)[
                :, ctx.panel.symbol_index(ctx.market)
            ]
            return a - m[:, None]
        sectors = np.array([ctx.panel.sectors.get(s, "") for s in ctx.panel.symbols])
        out = a - row_mean(a)[:, None]
        for sector in sorted(set(sectors) - {""}):
            cols = sectors == sector
            enough = np.isfinite(a[:, cols]).sum(axis=1) >= MIN_SECTOR_NAMES
            demeaned = a[:, cols] - row_mean(a[:, cols])[:, None]
            out[:, cols] = np.where(enough[:, None], demeaned, out[:, cols])
        return out


class CSZScore(_Step):
    """(y - date mean) / date std over the cross-section (Qlib's CSZScoreNorm)."""

    name = "cs_zscore"

    def __call__(self, y: np.ndarray, ctx: TargetContext) -> np.ndarray:
        a = _cs(y, ctx)
        mu = row_mean(a)
        with np.errstate(invalid="ignore"):
            sd = np.sqrt(row_mean((a - mu[:, None]) ** 2))
        sd = np.where(sd > 0, sd, np.nan)
        return (a - mu[:, None]) / sd[:, None]


class CSRank(_Step):
    """Gaussian rank per date: the inverse normal of (rank - 0.5) / n, ties at their average rank (Qlib's
    CSRankNorm ranks to a uniform and scales it; the Gaussian keeps MSE on it well behaved in the tails)."""

    name = "cs_rank"

    def __call__(self, y: np.ndarray, ctx: TargetContext) -> np.ndarray:
        a = _cs(y, ctx)
        ranks = pd.DataFrame(a).rank(axis=1, method="average").to_numpy()
        n = np.isfinite(a).sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return ndtri((ranks - 0.5) / n)


class Winsorize(_Step):
    """Clip to the [lower, upper] quantiles: of each date's cross-section (`per_date`, the default, learns
    nothing), or of the fold's training cells (bounds fitted on training rows only)."""

    def __init__(self, lower: float = 0.01, upper: float = 0.99, per_date: bool = True):
        if not 0.0 <= lower < upper <= 1.0:
            raise ValueError(f"Winsorize needs 0 <= lower < upper <= 1, got lower={lower}, upper={upper}")
        self.lower, self.upper, self.per_date = lower, upper, per_date
        self.name = "winsorize" + ("" if per_date else "_fitted")
        self.bounds: tuple[float, float] | None = None

    def fit(self, y: np.ndarray, rows: np.ndarray, ctx: TargetContext) -> None:
        if self.per_date:
            return
        vals = _cs(y, ctx)[rows]
        vals = vals[np.isfinite(vals)]
        if not len(vals):
            raise ValueError("Winsorize(per_date=False): the fold's training rows have no finite target")
        lo, hi = np.quantile(vals, [self.lower, self.upper])
        self.bounds = (float(lo), float(hi))

    def __call__(self, y: np.ndarray, ctx: TargetContext) -> np.ndarray:
        a = _cs(y, ctx)
        if self.per_date:
            with warnings.catch_warnings():  # dates with no cross-section stay NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                lo, hi = np.nanquantile(a, [self.lower, self.upper], axis=1)
            return np.clip(a, lo[:, None], hi[:, None])
        if self.bounds is None:
            raise RuntimeError(
                "Winsorize(per_date=False): fit on the fold's training rows before transforming"
            )
        return np.clip(a, *self.bounds)


class Horizons(_Step):
    """A blend of forward returns over several horizons, each normalised per date (`cs_rank` or
    `cs_zscore`) before weighting, then re-standardised per date. It replaces the label it is given, so it
    comes first in a pipeline; the blend's label span is its longest horizon's."""

    def __init__(
        self,
        horizons: Sequence[int] = (1, 5, 21),
        weights: Sequence[float] | None = None,
        normalize: Literal["cs_rank", "cs_zscore"] = "cs_rank",
    ):
        self.horizons = tuple(int(h) for h in horizons)
        if not self.horizons or min(self.horizons) < 1:
            raise ValueError(f"Horizons needs horizons >= 1, got {list(horizons)}")
        w = np.ones(len(self.horizons)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(self.horizons),) or w.sum() <= 0:
            raise ValueError(f"Horizons: {len(self.horizons)} weights needed, summing > 0; got {weights}")
        self.weights = w / w.sum()
        self.normalize: CSRank | CSZScore = CSRank() if normalize == "cs_rank" else CSZScore()
        self.name = "horizons_" + "_".join(map(str, self.horizons))

    def span(self, horizon_days: int) -> int:
        del horizon_days
        return label_span(max(self.horizons))

    def __call__(self, y: np.ndarray, ctx: TargetContext) -> np.ndarray:
        del y
        stack = np.stack(  # [H, T, N]
            [self.normalize(forward_return(ctx.panel, h, ctx.execution), ctx) for h in self.horizons]
        )
        ok = np.isfinite(stack).all(axis=0)
        blend = np.where(ok, np.tensordot(self.weights, np.nan_to_num(stack), axes=1), np.nan)
        return CSZScore()(blend, ctx)


@dataclass
class TargetPipeline:
    """The configured steps, in order. Empty = the raw label (today's behaviour, unchanged)."""

    steps: tuple[TargetStep, ...] = field(default_factory=tuple)

    @property
    def is_raw(self) -> bool:
        return all(isinstance(s, Raw) for s in self.steps)

    def describe(self) -> str:
        return " -> ".join(s.name for s in self.steps) if self.steps else "raw"

    def span(self, horizon_days: int, task: str = "returns") -> int:
        """Sessions after t that the target of t reads (the folds purge at least this many)."""
        return max([label_span(horizon_days, task), *(s.span(horizon_days) for s in self.steps)])

    def check_task(self, task: str) -> None:
        if not self.is_raw and task != "returns":
            raise ValueError(
                f"task.target {self.describe()!r} transforms returns; task {task!r} has its own label. "
                "Use task=returns (or task=returns_quantile) with a cross-sectional target, or leave target empty."
            )

    def fold_target(self, labels: np.ndarray, train_rows: tuple[int, int], ctx: TargetContext) -> np.ndarray:
        """[T, N] training target: each step fitted on the training rows (decision dates in [start, stop))
        of what the steps before it produced, then applied to every date."""
        if not self.steps:
            return labels
        rows = np.arange(*train_rows)
        y = labels
        for step in self.steps:
            step.fit(y, rows, ctx)
            y = step(y, ctx)
        return y
