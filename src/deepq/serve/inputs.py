"""Model inputs at serve time, built exactly as offline.

The registered version carries the run's resolved config and model.json. From them we rebuild the same
panel (the `data` config, optionally pointed at another copy of the prices), the same feature functions
(`features` config, in model.json's order), the same sample and window masks, and gather windows with the
same arithmetic as the datamodule's `WindowGather` (x part) and the normaliser fitted on the exported fold's training rows. Features are causal
(tests/test_causality.py), so computing them over the whole panel once and reading row t gives what a
computation over the panel truncated at t would give.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from deepq.data.panel import Panel
from deepq.dataset.build import run_features
from deepq.dataset.context import direction_from_score, window_ends
from deepq.dataset.covariates import CALENDAR_CHANNELS, calendar_features, extend_sessions
from deepq.dataset.normalize import Normalizer, cross_sectional_rank
from deepq.features.freshness import SeriesLag


class InputError(ValueError):
    """A request the model cannot answer (unknown symbol, date outside the panel, wrong feature shape)."""


class StaleDateError(InputError):
    """An as-of date the served data cannot answer as asked: after its last session, or not a session."""


def normalizer_from_meta(meta: Mapping[str, Any]) -> Normalizer:
    d = meta.get("normalizer")
    if not d:  # no normaliser recorded: identity, as method "none"
        n = len(meta["features"])
        return Normalizer("none", np.zeros(n, np.float32), np.ones(n, np.float32), 5.0)
    return Normalizer(
        d["method"],
        np.asarray(d["center"], dtype=np.float32),
        np.asarray(d["scale"], dtype=np.float32),
        float(d.get("clip", 5.0)),
    )


def score_from_outputs(out: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """The head's ranking score (models/heads.py): the first output, or P(top) - P(bottom) for 3+ classes."""
    if len(names) > 2 and all(n.startswith("p_") for n in names):
        return (out[:, -1] - out[:, 0]).astype(np.float64)
    return out[:, 0].astype(np.float64)


@dataclass(frozen=True)
class PanelFeatures:
    """A run's panel and features with the masks the datamodule used. Shared by versions of one config."""

    panel: Panel
    features: torch.Tensor  # float32 [T, N, F], raw (rank-transformed when the normaliser is 'rank')
    feature_names: tuple[str, ...]
    window_ok: np.ndarray  # bool [T, N]: a usable window ends here (as PanelDataModule.window_ok)
    lagging: tuple[SeriesLag, ...] = ()  # reference series behind the last session (features/freshness.py)


def load_panel_features(
    config: str,
    lookback: int,
    rank: bool,
    data_overrides: Mapping[str, Any] | None = None,
    reuse: bool = True,
    allow_stale_inputs: bool = False,
) -> PanelFeatures:
    """Cached per process on the config text: versions of one run (and repeated services) share a panel.
    `reuse=False` rebuilds from the data source (a reload after new sessions reached the cache) and caches
    the new panel in place of the old one. `allow_stale_inputs` accepts a reference series stale past the
    fill limit (features/freshness.py), which otherwise stops the load with StaleInputError."""
    overrides = json.dumps(dict(data_overrides or {}), sort_keys=True, default=str)
    key = (config, lookback, rank, overrides, allow_stale_inputs)
    if not reuse:
        _CACHE.pop(key, None)
    if key not in _CACHE:
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        cfg = OmegaConf.create(config)
        assert isinstance(cfg, DictConfig), "a run config is a mapping"
        _CACHE[key] = _load_panel_features(cfg, lookback, rank, data_overrides, allow_stale_inputs)
    return _CACHE[key]


_CACHE: dict[tuple[str, int, bool, str, bool], PanelFeatures] = {}


def _load_panel_features(
    cfg: DictConfig,
    lookback: int,
    rank: bool,
    data_overrides: Mapping[str, Any] | None,
    allow_stale_inputs: bool = False,
) -> PanelFeatures:
    if allow_stale_inputs:
        cfg = OmegaConf.merge(cfg, {"freshness": {"allow_stale": True}})  # type: ignore[assignment]
    data_cfg = OmegaConf.merge(cfg.data, dict(data_overrides or {}))
    panel: Panel = instantiate(data_cfg)
    # the features (with any `features.sources` columns) and the sample mask exactly as training built them
    run = run_features(cfg, panel)
    features, sample_ok = run.features, run.sample_ok
    if rank:
        features = cross_sectional_rank(features, sample_ok)
    return PanelFeatures(
        panel,
        torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)),
        run.names,
        window_ends(np.isfinite(panel["close"]), lookback) & sample_ok,
        run.lagging,
    )


SERVABLE_INPUTS = ("x", "static", "known", "t")  # the datamodule's batch fields the server can rebuild


@dataclass(frozen=True)
class Inputs:
    tensors: tuple[
        torch.Tensor, ...
    ]  # the model's inputs in `net.inputs` order; [0] is x [B, L, F] normalised
    keys: list[str]  # one per requested row (symbols, or instance ids)
    usable: np.ndarray  # bool [len(keys)]: which requested rows have a window (x has sum(usable) rows)
    reasons: dict[str, str]  # key -> why it has no prediction
    as_of: str | None = None  # the session the windows end on
    stale: bool = False  # as_of is not the requested date (allowed with allow_stale)
    # a cross-stock model's tensors hold the date's whole servable cross-section; these are the rows of its
    # output that answer the requested (usable) keys. None: the tensors are exactly the requested rows.
    select: np.ndarray | None = None

    @property
    def x(self) -> torch.Tensor:
        return self.tensors[0]

    def rows(self, start: int, stop: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[start:stop] for t in self.tensors)


class InputBuilder:
    """Model inputs for (symbols, as-of date) from the panel, or from a raw feature payload.

    Besides the feature window x, a network may read (its `inputs`, recorded in model.json) the static ids
    [symbol, sector] and the calendar `known` of the window's sessions plus the `future_days` after it; both
    are rebuilt as the datamodule's WindowGather builds them (deepq.dataset.covariates), with the symbol and
    sector ids of the training run from model.json.
    """

    def __init__(self, source: PanelFeatures, meta: Mapping[str, Any]):
        self.source, self.meta = source, meta
        self.lookback = int(meta["lookback"])
        self.feature_names = tuple(meta["features"])
        if source.feature_names != self.feature_names:
            raise InputError(
                f"the config's features {list(source.feature_names)} differ from model.json's {list(self.feature_names)}"
            )
        self.input_names = tuple(meta.get("inputs") or ("x",))
        # a network reading `t` attends across the stocks of a date: it is always run on a whole date
        self.cross_section = "t" in self.input_names
        if self.input_names[0] != "x" or not set(self.input_names) <= set(SERVABLE_INPUTS):
            raise InputError(
                f"model.json inputs {list(self.input_names)}: the server builds {list(SERVABLE_INPUTS)} with x first"
            )
        self.normalizer = normalizer_from_meta(meta)
        self.center = torch.as_tensor(self.normalizer.center, dtype=torch.float32)
        self.scale = torch.as_tensor(self.normalizer.scale, dtype=torch.float32)
        self.offsets = torch.arange(-self.lookback + 1, 1)
        self._features_np = source.features.numpy()  # a view, for the one-row path
        self._center_np = self.normalizer.center.astype(np.float32)
        self._scale_np = self.normalizer.scale.astype(np.float32)
        panel = source.panel
        self._symbol_col = {s: j for j, s in enumerate(panel.symbols)}
        # as_of text -> (panel row, the row's date is that day): parsing a date costs more than a forward
        self._date_rows: dict[str, tuple[int, bool]] = {}
        self.servable = source.window_ok  # [T, N] bool: cells this model can answer
        if "static" in self.input_names:
            self._static_of_col = self._static_ids(meta, panel.symbols)  # [N, 2], -1 = not in training
            self.servable = self.servable & (self._static_of_col[:, 0] >= 0)[None, :]
        if "known" in self.input_names:
            channels = tuple(meta.get("calendar_channels") or CALENDAR_CHANNELS)
            if channels != CALENDAR_CHANNELS:
                raise InputError(
                    f"model.json calendar_channels {list(channels)} != {list(CALENDAR_CHANNELS)}"
                )
            future = int(meta["future_days"])
            self._calendar = torch.from_numpy(calendar_features(extend_sessions(panel.dates, future)))
            self._known_offsets = torch.arange(-self.lookback + 1, future + 1)

    @staticmethod
    def _static_ids(meta: Mapping[str, Any], symbols: tuple[str, ...] | list[str]) -> np.ndarray:
        """Per panel column, the embedding ids the model was trained with (its symbol's index in the training
        panel, its sector id); -1 for symbols the training run did not have (no embedding to look up)."""
        trained = list(meta.get("symbols") or [])
        sector_of = list(meta.get("sector_of_symbol") or [])
        if not trained or len(sector_of) != len(trained):
            raise InputError("model.json lacks `symbols` / `sector_of_symbol`: cannot rebuild static ids")
        index = {s: i for i, s in enumerate(trained)}
        out = np.full((len(symbols), 2), -1, dtype=np.int64)
        for j, s in enumerate(symbols):
            if s in index:
                out[j] = (index[s], sector_of[index[s]])
        return out

    def date_row(self, as_of: str) -> int:
        """The panel row of the last session on or before `as_of`."""
        return self._row_of(as_of)[0]

    def _row_of(self, as_of: str) -> tuple[int, bool]:
        hit = self._date_rows.get(as_of)
        if hit is None:
            panel = self.source.panel
            try:
                t = panel.date_index(as_of)
                exact = bool(panel.dates[t] == np.datetime64(pd.Timestamp(as_of).date(), "D"))
            except (KeyError, ValueError) as e:
                raise InputError(f"as_of {as_of!r}: {e}") from None
            if len(self._date_rows) >= 4096:
                self._date_rows.clear()
            hit = self._date_rows[as_of] = (t, exact)
        return hit

    def session_row(self, as_of: str, allow_stale: bool = False) -> tuple[int, bool]:
        """(panel row, stale) for a request's as-of date. A date after the served data's last session, or one
        that is not a session of the panel (a weekend, a holiday), is answered from the last session on or
        before it only with `allow_stale` (then stale is True); otherwise StaleDateError names that session,
        so a client whose feed stopped is told instead of silently getting an old forecast."""
        t, exact = self._row_of(as_of)
        if exact or allow_stale:
            return t, not exact
        dates = self.source.panel.dates
        if t == len(dates) - 1:
            raise StaleDateError(
                f"as_of {as_of} is after the last session of the served data, {dates[t]} (data_as_of): "
                "ask for that session or earlier, reload the server after new sessions reach the cache, "
                "or send allow_stale=true to get the forecast as of that session"
            )
        raise StaleDateError(
            f"as_of {as_of} is not a session; the last session on or before it is {dates[t]}: "
            "ask for that date, or send allow_stale=true"
        )

    def for_symbols(self, symbols: list[str], as_of: str, allow_stale: bool = True) -> Inputs:
        """Windows for `symbols` ending at `as_of`'s session. With allow_stale (the default for library
        callers) a non-session date is answered from the session before it, as Panel.date_index does;
        the server passes the client's allow_stale (default False)."""
        panel = self.source.panel
        try:
            cols = np.fromiter((self._symbol_col[s] for s in symbols), dtype=np.int64, count=len(symbols))
        except KeyError:
            unknown = [s for s in symbols if s not in self._symbol_col]
            raise InputError(
                f"unknown symbol(s) {unknown[:10]}: the panel has {len(panel.symbols)} symbols"
            ) from None
        t, stale = self.session_row(as_of, allow_stale)
        usable = self.servable[t, cols]
        reasons = {}
        if not usable.all():
            reasons = {
                s: f"no usable {self.lookback}-session window for {s} at {panel.dates[t]} (no bar that day, "
                "too little history, not in the traded universe, or not in the model's training panel)"
                for s, ok in zip(symbols, usable, strict=True)
                if not ok
            }
        sel = cols[usable]
        if self.cross_section:  # the scores depend on the cross-section: run the date's whole universe
            universe = np.flatnonzero(self.servable[t])
            tensors = self.model_inputs(np.full(len(universe), t), universe)
            select = np.searchsorted(universe, sel)
            return Inputs(tensors, list(symbols), usable, reasons, str(panel.dates[t]), stale, select)
        tensors = self.model_inputs(np.full(len(sel), t), sel)
        return Inputs(tensors, list(symbols), usable, reasons, str(panel.dates[t]), stale)

    def model_inputs(self, t: np.ndarray, s: np.ndarray) -> tuple[torch.Tensor, ...]:
        """Every model input (net.inputs order) for windows ending at date rows `t`, symbol columns `s`."""
        out = []
        for name in self.input_names:
            if name == "x":
                out.append(self.windows(t, s))
            elif name == "static":
                out.append(torch.from_numpy(self._static_of_col[s]))
            elif name == "t":  # date rows: a cross-stock network only compares them for equality
                out.append(torch.as_tensor(t, dtype=torch.long))
            else:  # known: the calendar of the window's sessions and the future_days after t
                rows = torch.as_tensor(t, dtype=torch.long)[:, None] + self._known_offsets
                out.append(self._calendar[rows])
        return tuple(out)

    def windows(self, t: np.ndarray, s: np.ndarray) -> torch.Tensor:
        """Normalised windows [B, L, F] ending at date rows `t` for symbol columns `s` (usable cells only)."""
        if len(t) and t.min() == t.max():  # one as-of date (every request): a slice of L sessions, then
            t0 = int(t[0])  # the columns; normalised in numpy with the same float32 arithmetic as normalise()
            if t0 < self.lookback - 1:
                raise InputError(f"date row {t0} has fewer than {self.lookback} sessions before it")
            raw = self._features_np[t0 - self.lookback + 1 : t0 + 1, s].transpose(1, 0, 2)  # [B, L, F]
            x = (raw - self._center_np) / self._scale_np
            np.clip(x, -self.normalizer.clip, self.normalizer.clip, out=x)
            x[np.isnan(x)] = 0.0
            return torch.from_numpy(x)
        rows = torch.as_tensor(t, dtype=torch.long)[:, None] + self.offsets  # [B, L], oldest first
        return self.normalise(self.source.features[rows, torch.as_tensor(s, dtype=torch.long)[:, None]])

    def for_windows(self, windows: np.ndarray, keys: list[str]) -> Inputs:
        """Raw (un-normalised) feature windows [B, lookback, F], NaN for undefined values."""
        if self.normalizer.method == "rank":
            raise InputError("this model ranks features across symbols per date: send symbols and as_of")
        if self.input_names != ("x",):
            raise InputError(
                f"this model also reads {list(self.input_names[1:])} (symbol ids, calendar): send symbols and as_of"
            )
        want = (self.lookback, len(self.feature_names))
        if windows.ndim != 3 or windows.shape[1:] != want:
            raise InputError(
                f"features payload has shape {list(windows.shape)}, expected [batch, {want[0]}, {want[1]}]"
            )
        x = self.normalise(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)))
        return Inputs((x,), keys, np.ones(len(keys), dtype=bool), {})

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """As WindowGather: (x - center) / scale, clipped, NaN (still warming up) -> 0, the training median."""
        clip = self.normalizer.clip
        return torch.nan_to_num_(((x - self.center) / self.scale).clamp_(-clip, clip), nan=0.0)


def postprocess(out: np.ndarray, meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Raw model outputs [B, K] -> pred, score, up and each named output."""
    names = tuple(meta.get("outputs") or ("pred",))
    score = score_from_outputs(out, names)
    result = {
        "pred": out[:, 0].astype(np.float64),
        "score": score,
        "up": direction_from_score(str(meta.get("task", "")), score),
    }
    if len(names) > 1:
        result |= {n: out[:, k].astype(np.float64) for k, n in enumerate(names)}
    return result
