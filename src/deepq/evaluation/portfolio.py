"""Portfolio construction plug-ins and a cost-aware daily backtest over a model's scores.

Timing: weights decided from scores of decision date d (data up to the close of d) earn the next-period
return `fwd_ret[d]`, the simple return over the session after execution (next open -> open, or next close ->
close, as the task's `execution` says), exactly the one-day version of the label's holding period.

Constructions (`PortfolioSpec.kind`):
  long_short  equal-weight long the top `quantile` and short the bottom `quantile` of names by score
              (long leg +1, short leg -1, gross 2);
  top_k       equal-weight long the `top_k` best-scored names (gross 1);
  cvar        long-only mean-CVaR LP over the `cvar_candidates` best names (cvar.py), scenarios = their
              last `cvar_lookback` daily returns, expected returns from the model.
Rebalancing happens every `holding_days` sessions; weights are held at target in between (no drift).
A `rank_buffer` (fraction of the cross-section) keeps a held name until it falls that far past the entry
cut-off, and `max_turnover` caps sum |w_new - w_old| per rebalance by moving part way to the target. Costs
are (cost_bps + slippage_bps) / 1e4 per unit of traded notional, charged on the rebalance day.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from deepq.evaluation.cvar import mean_cvar_weights

Kind = Literal["long_short", "top_k", "cvar"]


@dataclass(frozen=True)
class PortfolioSpec:
    name: str = "long_short"
    kind: Kind = "long_short"
    quantile: float = 0.1
    top_k: int = 20
    holding_days: int = 1
    rank_buffer: float = 0.0
    max_turnover: float | None = None
    cost_bps: float = 5.0
    slippage_bps: float = 0.0
    cvar_beta: float = 0.95
    cvar_risk_aversion: float = 1.0
    cvar_max_weight: float = 0.1
    cvar_candidates: int = 40
    cvar_lookback: int = 250

    def __post_init__(self) -> None:
        if self.kind not in ("long_short", "top_k", "cvar"):
            raise ValueError(
                f"portfolio {self.name!r}: kind must be long_short, top_k or cvar, got {self.kind!r}"
            )
        if not 0 < self.quantile <= 0.5:
            raise ValueError(f"portfolio {self.name!r}: quantile must be in (0, 0.5], got {self.quantile}")
        if self.holding_days < 1:
            raise ValueError(f"portfolio {self.name!r}: holding_days must be >= 1, got {self.holding_days}")


@dataclass(frozen=True)
class BacktestResult:
    daily: pd.DataFrame  # index date: gross, cost, net, turnover, n_long, n_short
    win_rate: float  # share of (position, holding period) pairs with positive gross P&L
    n_positions: int


def _pct_rank(s: np.ndarray) -> np.ndarray:
    """Percentile rank in (0, 1] of finite entries (average ties), NaN elsewhere."""
    out = np.full(s.shape, np.nan)
    ok = np.isfinite(s)
    if ok.any():
        out[ok] = pd.Series(s[ok]).rank(method="average").to_numpy() / ok.sum()
    return out


def _equal(mask: np.ndarray, sign: float) -> np.ndarray:
    n = int(mask.sum())
    return np.where(mask, sign / n, 0.0) if n else np.zeros(mask.shape)


def quantile_long_short(score: np.ndarray, w_old: np.ndarray, q: float, buffer: float) -> np.ndarray:
    pr = _pct_rank(score)
    ok = np.isfinite(pr)
    long = ok & ((pr > 1 - q) | ((w_old > 0) & (pr > 1 - q - buffer)))
    short = ok & ((pr <= q) | ((w_old < 0) & (pr <= q + buffer))) & ~long
    return _equal(long, 1.0) + _equal(short, -1.0)


def top_k_long(score: np.ndarray, w_old: np.ndarray, k: int, buffer: float) -> np.ndarray:
    ok = np.isfinite(score)
    n = int(ok.sum())
    if n == 0:
        return np.zeros(score.shape)
    order = np.full(score.shape, np.inf)
    order[ok] = pd.Series(-score[ok]).rank(method="first").to_numpy()  # 1 = best
    keep = ok & ((order <= k) | ((w_old > 0) & (order <= k + buffer * n)))
    return _equal(keep, 1.0)


def cap_turnover(w_new: np.ndarray, w_old: np.ndarray, max_turnover: float | None) -> np.ndarray:
    step = w_new - w_old
    traded = np.abs(step).sum()
    if max_turnover is None or traded <= max_turnover or traded == 0:
        return w_new
    return w_old + step * (max_turnover / traded)


def _cvar_target(
    spec: PortfolioSpec, score: np.ndarray, mu: np.ndarray, w_old: np.ndarray, history: np.ndarray
) -> np.ndarray:
    ok = np.isfinite(score) & np.isfinite(mu)
    cand = np.zeros(score.shape, dtype=bool)
    if ok.any():
        best = np.argsort(np.where(ok, -score, np.inf))[: spec.cvar_candidates]
        cand[best[ok[best]]] = True
    cand |= w_old > 0
    idx = np.flatnonzero(cand)
    w = np.zeros(score.shape)
    if len(idx) == 0:
        return w
    max_w = max(spec.cvar_max_weight, 1.0 / len(idx))
    sol = mean_cvar_weights(
        history[:, idx],
        np.nan_to_num(mu[idx]),
        spec.cvar_beta,
        spec.cvar_risk_aversion,
        max_w,
        w_prev=w_old[idx],
        max_turnover=spec.max_turnover,
    )
    w[idx] = sol.weights
    return w


def backtest(
    scores: pd.DataFrame,
    fwd_ret: pd.DataFrame,
    spec: PortfolioSpec,
    mu: pd.DataFrame | None = None,
    past_ret: pd.DataFrame | None = None,
) -> BacktestResult:
    """Daily net returns of `spec` over date x symbol `scores` (NaN = not tradable) and aligned `fwd_ret`.

    `mu` (expected daily returns, same shape) and `past_ret` (daily returns known at each date, any
    superset of dates with the same columns) are needed by the cvar construction only.
    """
    if not scores.index.equals(fwd_ret.index) or not scores.columns.equals(fwd_ret.columns):
        raise ValueError("backtest: scores and fwd_ret must share the same date index and symbol columns")
    S = scores.to_numpy(np.float64)
    R = np.nan_to_num(fwd_ret.to_numpy(np.float64))
    D, N = S.shape
    if spec.kind == "cvar" and (mu is None or past_ret is None):
        raise ValueError(f"portfolio {spec.name!r}: cvar needs mu and past_ret")
    M = (
        mu.reindex(index=scores.index, columns=scores.columns).to_numpy(np.float64)
        if mu is not None
        else None
    )
    if past_ret is not None:
        P = past_ret.reindex(columns=scores.columns).fillna(0.0)
        past_rows = np.searchsorted(P.index.to_numpy(), scores.index.to_numpy(), side="right")
        P_np = P.to_numpy(np.float64)
    rate = (spec.cost_bps + spec.slippage_bps) / 1e4
    w = np.zeros(N)
    gross, cost, turnover = np.zeros(D), np.zeros(D), np.zeros(D)
    n_long, n_short = np.zeros(D, dtype=np.int64), np.zeros(D, dtype=np.int64)
    block_pnl = np.zeros(N)
    wins = positions = 0
    for d in range(D):
        if d % spec.holding_days == 0:
            held = w != 0
            wins += int(np.sum(block_pnl[held] > 0))
            positions += int(held.sum())
            if spec.kind == "long_short":
                target = quantile_long_short(S[d], w, spec.quantile, spec.rank_buffer)
            elif spec.kind == "top_k":
                target = top_k_long(S[d], w, spec.top_k, spec.rank_buffer)
            else:
                assert M is not None
                hist = P_np[max(past_rows[d] - spec.cvar_lookback, 0) : past_rows[d]]
                target = _cvar_target(spec, S[d], M[d], w, hist)
            new = target if spec.kind == "cvar" else cap_turnover(target, w, spec.max_turnover)
            turnover[d] = np.abs(new - w).sum()
            cost[d] = turnover[d] * rate
            w = new
            block_pnl = np.zeros(N)
        pnl = w * R[d]
        block_pnl += pnl
        gross[d] = pnl.sum()
        n_long[d], n_short[d] = int(np.sum(w > 0)), int(np.sum(w < 0))
    held = w != 0
    wins += int(np.sum(block_pnl[held] > 0))
    positions += int(held.sum())
    daily = pd.DataFrame(
        {
            "gross": gross,
            "cost": cost,
            "net": gross - cost,
            "turnover": turnover,
            "n_long": n_long,
            "n_short": n_short,
        },
        index=scores.index,
    )
    return BacktestResult(daily, wins / positions if positions else float("nan"), positions)
