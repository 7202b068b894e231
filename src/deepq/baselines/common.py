"""What the non-neural plug-ins share: the tabular view, task checks, and raw outputs -> `Predictions`.

The tabular view of a cell (t, s) is the feature vector at its decision date, `data.features[t, s]`
(causal by construction of the registry), optionally with the symbol's sector as an integer code.
Outputs follow the task's scale, as the neural heads do:
    returns   pred = forecast log return, score = pred, up = pred > 0
    direction pred = P(up), score = P(up), up = P(up) > 0.5
    signal    pred = most likely class (0 sell, 1 hold, 2 buy), score = P(buy) - P(sell), extra p_sell/p_hold/p_buy
    risk      pred = forecast log realised volatility, score = pred, up = NaN
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from deepq.dataset.context import PanelData, Predictions, direction_from_score

TASKS = ("returns", "direction", "signal", "risk")
SIGNAL_CLASSES = ("sell", "hold", "buy")


class TaskNotSupported(ValueError):
    """A plug-in was asked for a task it has no sensible forecast for."""


def check_task(model: str, task: str, supported: Iterable[str]) -> None:
    supported = tuple(supported)
    if task not in supported:
        raise TaskNotSupported(
            f"model {model!r} does not support task {task!r}; it supports {list(supported)}. "
            f"Pick another model for task={task}."
        )


def sector_codes(data: PanelData) -> np.ndarray:
    """[N] int code of each symbol's sector (-1 where unknown), sorted by sector name so codes are stable."""
    names = sorted({v for v in data.panel.sectors.values() if v})
    lookup = {n: i for i, n in enumerate(names)}
    return np.array(
        [lookup.get(data.panel.sectors.get(s, ""), -1) for s in data.panel.symbols], dtype=np.int64
    )


def tabular(data: PanelData, index: np.ndarray, with_sector: bool = False) -> np.ndarray:
    """[M, F(+1)] float32 features at each cell's decision date (NaN kept: the boosters handle it)."""
    x = data.features[index[:, 0], index[:, 1]]
    if with_sector:
        x = np.concatenate([x, sector_codes(data)[index[:, 1]][:, None].astype(np.float32)], axis=1)
    return x


def subsample(index: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """At most `max_rows` cells, drawn uniformly without replacement and kept in date-major order."""
    if max_rows is None or len(index) <= max_rows:
        return index
    keep = np.sort(np.random.default_rng(seed).choice(len(index), size=max_rows, replace=False))
    return index[keep]


def targets(data: PanelData, index: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """The label (or a fold's training target, `PanelData.fold_labels`) at each cell of `index`."""
    return (data.labels if labels is None else labels)[index[:, 0], index[:, 1]]


def from_point(task: str, value: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> Predictions:
    """A regression output on the label's scale (returns or risk)."""
    value = np.asarray(value, dtype=np.float64)
    return Predictions(value, value.copy(), direction_from_score(task, value), extra)


def from_probs(task: str, probs: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> Predictions:
    """Class probabilities: [M] P(up) for direction, [M, 3] (sell, hold, buy) for signal."""
    probs = np.asarray(probs, dtype=np.float64)
    if task == "direction":
        p_up = probs if probs.ndim == 1 else probs[:, -1]
        return Predictions(p_up, p_up.copy(), direction_from_score(task, p_up), extra)
    if task == "signal":
        if probs.ndim != 2 or probs.shape[1] != len(SIGNAL_CLASSES):
            raise ValueError(f"signal needs [M, 3] class probabilities, got shape {probs.shape}")
        named = {f"p_{c}": probs[:, k] for k, c in enumerate(SIGNAL_CLASSES)}
        pred = np.argmax(probs, axis=1).astype(np.float64)
        score = probs[:, 2] - probs[:, 0]
        return Predictions(pred, score, np.full(len(pred), np.nan), named | (extra or {}))
    raise ValueError(f"class probabilities make no forecast for task {task!r}")


def daily_log_returns(data: PanelData) -> np.ndarray:
    """[T, N] close-to-close log return earned on session t (known at t's close), NaN where undefined."""
    close = data.panel["close"]
    r = np.full(close.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        r[1:] = np.log(close[1:] / close[:-1])
    r[~np.isfinite(r)] = np.nan
    return r


def non_crossing(q: np.ndarray) -> np.ndarray:
    """Sort quantile forecasts along the last axis (Chernozhukov et al.'s rearrangement): never worse in
    pinball loss, and the quantiles can no longer cross."""
    return np.sort(q, axis=-1)


def cvar_from_quantiles(levels: np.ndarray, q: np.ndarray, alpha: float) -> np.ndarray:
    """Expected value below the alpha-quantile (lower-tail CVaR/expected shortfall of the forecast), as the
    average of the quantile function over (0, alpha]: trapezoids between the given levels, the quantile
    function held flat below the lowest level. `q` is [M, K] at sorted `levels`."""
    levels = np.asarray(levels, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if levels[0] > alpha:
        raise ValueError(
            f"CVaR at alpha={alpha} needs a quantile level at or below it; lowest is {levels[0]}"
        )
    below = levels < alpha
    k = int(np.searchsorted(levels, alpha))  # first level >= alpha
    if k < len(levels) and levels[k] == alpha:
        q_alpha = q[:, k]
    else:
        w = (alpha - levels[k - 1]) / (levels[k] - levels[k - 1])
        q_alpha = (1 - w) * q[:, k - 1] + w * q[:, k]
    grid = np.concatenate([levels[below], [alpha]])
    vals = np.concatenate([q[:, below], q_alpha[:, None]], axis=1)
    area = vals[:, 0] * grid[0]  # flat from 0 to the lowest level
    area = area + (0.5 * (vals[:, 1:] + vals[:, :-1]) * np.diff(grid)).sum(axis=1)
    return area / alpha
