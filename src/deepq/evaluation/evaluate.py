"""The evaluation entry point: out-of-fold predictions in, every table and series the report shows out.

`evaluate_run(oof, data, options)` is a plain function over the OOF frame (see metrics.py for its schema)
and the run's PanelData (for execution-consistent daily returns, the SPY benchmark and the market regime
series). Each model is evaluated on exactly the rows it scored, with always-up on the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from deepq.dataset.context import PanelData
from deepq.dataset.crosssection import IC_CONVENTION
from deepq.dataset.labels import entry_price, forward_return
from deepq.evaluation import metrics as M
from deepq.evaluation.degeneracy import DegeneracySpec, degeneracy_table
from deepq.evaluation.performance import performance
from deepq.evaluation.portfolio import PortfolioSpec, backtest
from deepq.evaluation.regimes import (
    DEFAULT_STRESS,
    StressWindow,
    by_regime,
    by_stress,
    market_close,
    regime_labels,
)
from deepq.evaluation.risk import qlike, var_backtest
from deepq.evaluation.stats import (
    binomial_tests,
    clustered_mean_ci,
    deflated_sharpe_ratio,
    mean_stat,
    newey_west_mean_ci,
    sharpe_stat,
    stationary_bootstrap_ci,
)
from deepq.evaluation.targets import targets_table

DEFAULT_PORTFOLIOS: tuple[PortfolioSpec, ...] = (
    PortfolioSpec("ls_decile_daily", "long_short", quantile=0.1, holding_days=1),
    PortfolioSpec("ls_decile_5d_buffered", "long_short", quantile=0.1, holding_days=5, rank_buffer=0.1),
    PortfolioSpec("top20_5d", "top_k", top_k=20, holding_days=5, rank_buffer=0.05),
)


@dataclass(frozen=True)
class EvalOptions:
    portfolios: tuple[PortfolioSpec, ...] = DEFAULT_PORTFOLIOS
    primary: str = "ls_decile_5d_buffered"  # the portfolio the seed targets are read from
    benchmark: str = "SPY"
    market: tuple[str, ...] = ("SPY", "^GSPC")
    stress: tuple[StressWindow, ...] = DEFAULT_STRESS
    ic_horizons: tuple[int, ...] = (1, 2, 5, 10, 21)
    n_trials: int = 1
    n_boot: int = 500
    mean_block: float = 10.0
    seed: int = 0
    degeneracy: DegeneracySpec = DegeneracySpec()


def options_from_config(node: Mapping[str, Any] | None, n_trials: int = 1, seed: int = 0) -> EvalOptions:
    """EvalOptions from the `evaluation:` config node (plain dict); portfolio entries inherit cost_bps etc."""
    node = dict(node or {})
    base = EvalOptions(n_trials=max(int(n_trials), 1), seed=seed)
    shared = {k: node[k] for k in ("cost_bps", "slippage_bps") if k in node}
    specs = tuple(PortfolioSpec(**(shared | dict(p))) for p in node.get("portfolios") or []) or tuple(
        replace(p, **shared) for p in DEFAULT_PORTFOLIOS
    )
    kw: dict[str, Any] = {"portfolios": specs}
    names = {f.name for f in fields(EvalOptions)}
    for k in ("primary", "benchmark", "n_boot", "mean_block"):
        if k in node and k in names:
            kw[k] = node[k]
    if "market" in node:
        kw["market"] = tuple(node["market"])
    if "ic_horizons" in node:
        kw["ic_horizons"] = tuple(int(h) for h in node["ic_horizons"])
    if "degeneracy" in node:
        kw["degeneracy"] = DegeneracySpec(**dict(node["degeneracy"] or {}))
    if "stress" in node:
        kw["stress"] = tuple(StressWindow(**dict(w)) for w in node["stress"])
    if kw.get("primary", base.primary) not in {p.name for p in specs}:
        kw["primary"] = specs[0].name
    return replace(base, **kw)


@dataclass
class EvalResult:
    summary: pd.DataFrame  # per model: forecast, direction (with CIs and tests), IC (with CI)
    per_fold: pd.DataFrame
    portfolios: pd.DataFrame  # per (model, portfolio): performance, costs, Sharpe CI, deflated Sharpe
    daily: pd.DataFrame  # long: date, model, portfolio, gross, cost, net, turnover (+ benchmark rows)
    ic_daily: pd.DataFrame  # date, model, ic
    ic_decay: pd.DataFrame  # model, horizon_days, rank_ic
    regimes: pd.DataFrame
    stress: pd.DataFrame
    targets: pd.DataFrame
    calibration: pd.DataFrame
    confusion: dict[str, pd.DataFrame] = field(default_factory=dict)
    primary: str = ""
    task: str = ""
    # per model with a score: do its scores tell stocks apart (deepq.evaluation.degeneracy)
    degeneracy: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_json(self) -> dict[str, Any]:
        def rec(df: pd.DataFrame) -> list[dict[str, Any]]:
            return df.replace({np.nan: None, np.inf: None, -np.inf: None}).to_dict("records")

        return {
            "summary": rec(self.summary),
            "portfolios": rec(self.portfolios),
            "ic_decay": rec(self.ic_decay),
            "regimes": rec(self.regimes),
            "stress": rec(self.stress),
            "targets": rec(self.targets),
            "degeneracy": rec(self.degeneracy),
            "rank_ic_convention": IC_CONVENTION,
            "primary_portfolio": self.primary,
            "task": self.task,
        }


def _cells(oof: pd.DataFrame, data: PanelData) -> tuple[np.ndarray, np.ndarray]:
    t = np.searchsorted(data.panel.dates, oof["date"].to_numpy().astype("datetime64[D]"))
    pos = {s: i for i, s in enumerate(data.panel.symbols)}
    s = oof["symbol"].map(pos).to_numpy()
    return t, s


def _direction_block(g: pd.DataFrame, opt: EvalOptions) -> dict[str, float]:
    """Direction accuracy with its date-clustered CI, bootstrap CI, and tests against 50 % and always-up."""
    d = g[np.isfinite(g["up"]) & np.isfinite(g["y_ret"])]
    if d.empty:
        return {}
    correct = ((d["up"] > 0.5) == (d["y_ret"] > 0)).to_numpy(float)
    up_correct = (d["y_ret"] > 0).to_numpy(float)
    acc, se, lo, hi = clustered_mean_ci(correct, d["date"].to_numpy())
    daily = pd.Series(correct).groupby(d["date"].to_numpy()).mean().to_numpy()
    _, blo, bhi = stationary_bootstrap_ci(daily, mean_stat, opt.n_boot, opt.mean_block, seed=opt.seed)
    tests = binomial_tests(correct.astype(bool), up_correct.astype(bool))
    iid_se = float(np.sqrt(acc * (1 - acc) / len(correct)))
    return {
        "dir_acc_lo": lo,
        "dir_acc_hi": hi,
        "dir_acc_se_clustered": se,
        "dir_acc_se_iid": iid_se,
        "dir_acc_boot_lo": blo,
        "dir_acc_boot_hi": bhi,
        "always_up_acc": float(up_correct.mean()),
        "p_acc_vs_50": tests["p_vs_50"],
        "p_acc_vs_always_up": tests["p_vs_always_up"],
    }


def _model_summary(g: pd.DataFrame, data: PanelData, opt: EvalOptions, entry: np.ndarray) -> dict[str, Any]:
    task = data.task.name
    out: dict[str, Any] = dict(M.summarize(g)) | _direction_block(g, opt)
    ic = M.daily_rank_ic(g)
    lags = max(data.task.horizon_days - 1, 0)
    _, _, lo, hi = newey_west_mean_ci(ic.to_numpy(), lags)
    out |= {"rank_ic_lo": lo, "rank_ic_hi": hi, "ic": float(M.daily_ic(g, method="pearson").mean())}
    y, pred, score = (g[c].to_numpy(float) for c in ("y", "pred", "score"))
    if task == "direction" and np.isfinite(score).any():
        out |= {f"cls_{k}": v for k, v in M.classification_metrics(y, score).items()}
    if task == "signal" and np.isfinite(pred).any():
        ok = np.isfinite(pred) & np.isfinite(y)
        correct = (pred[ok] == y[ok]).astype(float)
        acc, _, lo, hi = clustered_mean_ci(correct, g["date"].to_numpy()[ok])
        out |= {"signal_acc": acc, "signal_acc_lo": lo, "signal_acc_hi": hi}
    if task == "risk" and np.isfinite(pred).any():
        out |= {"r2_log_vol": M.r2(pred, y), "qlike": qlike(np.exp(2 * pred), np.exp(2 * y))}
        order = np.lexsort((g["date"].to_numpy(), g["symbol"].to_numpy()))
        var95 = -1.645 * np.exp(pred) * np.sqrt(data.task.horizon_days)
        out |= {
            f"var95_{k}": v
            for k, v in var_backtest(var95[order], g["y_ret"].to_numpy(float)[order], 0.05).items()
        }
    if task == "returns" and np.isfinite(pred).any():
        out |= _price_r2(g, entry)
    return out


def _price_r2(g: pd.DataFrame, entry: np.ndarray) -> dict[str, float]:
    """Median per-symbol R² of predicted vs realised exit price, beside the random walk's (exit = entry)."""
    p0 = entry
    ok = np.isfinite(p0) & np.isfinite(g["pred"].to_numpy(float)) & np.isfinite(g["y"].to_numpy(float))
    frame = pd.DataFrame(
        {
            "symbol": g["symbol"].to_numpy()[ok],
            "actual": p0[ok] * np.exp(g["y"].to_numpy(float)[ok]),
            "model": p0[ok] * np.exp(g["pred"].to_numpy(float)[ok]),
            "rw": p0[ok],
        }
    )
    if frame.empty:
        return {}
    a = frame["actual"]
    dev = (a - a.groupby(frame["symbol"]).transform("mean")) ** 2
    sums = (
        pd.DataFrame(
            {
                "sst": dev,
                "m": (frame["model"] - a) ** 2,
                "rw": (frame["rw"] - a) ** 2,
                "symbol": frame["symbol"],
            }
        )
        .groupby("symbol")
        .sum()
    )
    sums = sums[sums["sst"] > 0]
    per = pd.DataFrame({"m": 1 - sums["m"] / sums["sst"], "rw": 1 - sums["rw"] / sums["sst"]})
    return {"price_r2": float(per["m"].median()), "price_r2_rw": float(per["rw"].median())}


def _portfolio_rows(
    model: str,
    scores: pd.DataFrame,
    fwd: pd.DataFrame,
    bench: pd.Series,
    mu: pd.DataFrame,
    past: pd.DataFrame,
    opt: EvalOptions,
) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    rows, daily = [], []
    n_trials = opt.n_trials * max(len(opt.portfolios), 1)
    for spec in opt.portfolios:
        res = backtest(scores, fwd, spec, mu=mu, past_ret=past)
        net = res.daily["net"]
        perf = performance(net, bench)
        gross = performance(res.daily["gross"], bench)
        _, lo, hi = stationary_bootstrap_ci(
            net.to_numpy(), sharpe_stat(), opt.n_boot, opt.mean_block, seed=opt.seed
        )
        dsr, sr0 = deflated_sharpe_ratio(net.to_numpy(), n_trials)
        rows.append(
            {"model": model, "portfolio": spec.name, "kind": spec.kind, "holding_days": spec.holding_days}
            | perf
            | {
                "sharpe_lo": lo,
                "sharpe_hi": hi,
                "gross_sharpe": gross.get("sharpe", float("nan")),
                "gross_cagr": gross.get("cagr", float("nan")),
                "turnover_per_day": float(res.daily["turnover"].mean()),
                "cost_per_year": float(res.daily["cost"].mean() * 252),
                "win_rate": res.win_rate,
                "deflated_sharpe": dsr,
                "dsr_sr0_annual": sr0 * np.sqrt(252),
                "dsr_trials": n_trials,
                "profitable_10y": bool(perf.get("years", 0) >= 10 and perf.get("total_return", -1) > 0),
                "cost_bps": spec.cost_bps + spec.slippage_bps,
            }
        )
        daily.append(res.daily.reset_index(names="date").assign(model=model, portfolio=spec.name))
    return rows, daily


def evaluate_run(oof: pd.DataFrame, data: PanelData, options: EvalOptions | None = None) -> EvalResult:
    opt = options or EvalOptions()
    panel = data.panel
    oof = oof.copy()
    oof["date"] = pd.to_datetime(oof["date"])
    t, s = _cells(oof, data)
    execution = data.task.execution
    fwd1 = np.expm1(forward_return(panel, 1, execution))  # type: ignore[arg-type]
    entry = entry_price(panel, execution)  # type: ignore[arg-type]
    dates = pd.DatetimeIndex(pd.to_datetime(panel.dates))
    symbols = list(panel.symbols)
    fwd_all = pd.DataFrame(fwd1, index=dates, columns=symbols)
    close = panel["close"]
    past = pd.DataFrame(
        np.vstack([np.full((1, close.shape[1]), np.nan), close[1:] / close[:-1] - 1]),
        index=dates,
        columns=symbols,
    )
    bench_sym = (
        opt.benchmark if opt.benchmark in symbols else next((m for m in opt.market if m in symbols), None)
    )
    bench = fwd_all[bench_sym] if bench_sym else pd.Series(dtype=float)
    try:
        labels = regime_labels(market_close(panel, opt.market))
    except KeyError:
        labels = pd.DataFrame(index=dates)

    summary_rows, port_rows, daily_frames, ic_frames, decay_rows, calib, conf = [], [], [], [], [], [], {}
    fwd_h = {h: forward_return(panel, h, execution) for h in opt.ic_horizons}  # type: ignore[arg-type]
    for model, g in oof.groupby("model", sort=False):
        idx = g.index.to_numpy()
        summary_rows.append({"model": model} | _model_summary(g, data, opt, entry[t[idx], s[idx]]))
        ic = M.daily_rank_ic(g)
        if len(ic):
            ic_frames.append(pd.DataFrame({"date": ic.index, "model": model, "ic": ic.to_numpy()}))
            for h, fr in fwd_h.items():
                tmp = pd.DataFrame({"date": g["date"], "score": g["score"], "y_ret": fr[t[idx], s[idx]]})
                decay_rows.append(
                    {"model": model, "horizon_days": h, "rank_ic": float(M.daily_rank_ic(tmp).mean())}
                )
            scores = g.pivot_table(index="date", columns="symbol", values="score", aggfunc="first")
            scores = scores.reindex(columns=[c for c in symbols if c in scores.columns])
            fwd = fwd_all.reindex(index=scores.index, columns=scores.columns)
            mu = _expected_returns(g, data, scores)
            rows, daily = _portfolio_rows(str(model), scores, fwd, bench.reindex(scores.index), mu, past, opt)
            port_rows += rows
            daily_frames += daily
        if data.task.name == "direction" and g["score"].notna().any():
            calib.append(
                M.calibration_table(g["y"].to_numpy(float), g["score"].to_numpy(float)).assign(model=model)
            )
        if g["up"].notna().any():
            labels_ = [0.0, 1.0]
            actual = (g["y_ret"] > 0).astype(float).where(g["y_ret"].notna())
            conf[str(model)] = pd.DataFrame(
                M.confusion(
                    actual.to_numpy(float),
                    (g["up"] > 0.5).astype(float).where(g["up"].notna()).to_numpy(float),
                    labels_,
                ),
                index=["actual down", "actual up"],
                columns=["pred down", "pred up"],
            )
    summary = pd.DataFrame(summary_rows)
    guard = degeneracy_table(oof, opt.degeneracy)
    if len(guard) and len(summary):  # the guard's figures beside each model's metrics (compare reads them)
        cols = [
            "model",
            "distinct_share",
            "tied_date_share",
            "distinct95_share",
            "dispersion_ratio",
            "degenerate",
        ]
        summary = summary.merge(guard[cols], on="model", how="left")
    portfolios = pd.DataFrame(port_rows)
    daily = pd.concat(daily_frames, ignore_index=True) if daily_frames else pd.DataFrame()
    if len(daily) and bench_sym:
        b = bench.reindex(pd.DatetimeIndex(daily["date"].unique())).fillna(0.0)
        daily = pd.concat(
            [
                daily,
                pd.DataFrame(
                    {
                        "date": b.index,
                        "model": bench_sym,
                        "portfolio": "benchmark",
                        "net": b.to_numpy(),
                        "gross": b.to_numpy(),
                    }
                ),
            ],
            ignore_index=True,
        )
    regimes, stress = _breakdowns(oof, daily, labels, opt)
    return EvalResult(
        summary=summary,
        per_fold=M.metrics_table(oof, ("fold", "model")),
        portfolios=portfolios,
        daily=daily,
        ic_daily=pd.concat(ic_frames, ignore_index=True)
        if ic_frames
        else pd.DataFrame(columns=["date", "model", "ic"]),
        ic_decay=pd.DataFrame(decay_rows),
        regimes=regimes,
        stress=stress,
        targets=targets_table(summary, portfolios, opt.primary, data.task.name),
        calibration=pd.concat(calib, ignore_index=True) if calib else pd.DataFrame(),
        confusion=conf,
        primary=opt.primary,
        task=data.task.name,
        degeneracy=guard,
    )


def _expected_returns(g: pd.DataFrame, data: PanelData, scores: pd.DataFrame) -> pd.DataFrame:
    """Daily expected returns for the cvar plug-in: the model's return forecast per day of the horizon, or,
    for a score with no return scale, its cross-sectional z-score times 10 bps (a tilt, not a forecast)."""
    if data.task.name == "returns" and g["pred"].notna().any():
        mu = (
            g.pivot_table(index="date", columns="symbol", values="pred", aggfunc="first")
            / data.task.horizon_days
        )
        return mu.reindex(index=scores.index, columns=scores.columns)
    z = scores.sub(scores.mean(axis=1), axis=0).div(scores.std(axis=1).replace(0, np.nan), axis=0)
    return z * 1e-3


def _breakdowns(
    oof: pd.DataFrame, daily: pd.DataFrame, labels: pd.DataFrame, opt: EvalOptions
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accuracy, rank IC and the primary portfolio's performance per regime and per stress window."""

    def forecast(part: pd.DataFrame) -> dict[str, float]:
        out = M.summarize(part)
        return {
            "n": float(out["n"]),
            "dir_acc": float(out["dir_acc"]),
            "up_rate": float(out["up_rate"]),
            "rank_ic": float(out["rank_ic"]),
        }

    def perf(part: pd.DataFrame) -> dict[str, float]:
        p = performance(part.set_index("date")["net"]) if len(part) > 1 else {}
        return {k: p.get(k, float("nan")) for k in ("total_return", "sharpe", "max_drawdown", "hit_rate")}

    reg, st = [], []
    for model, g in oof.groupby("model", sort=False):
        f_reg = by_regime(g, labels, forecast) if len(labels.columns) else pd.DataFrame()
        f_st = by_stress(g, opt.stress, forecast)
        if len(daily):
            d = daily[(daily["model"] == model) & (daily["portfolio"] == opt.primary)]
            if len(d):
                p_reg = by_regime(d, labels, perf) if len(labels.columns) else pd.DataFrame()
                p_st = by_stress(d, opt.stress, perf)
                if len(p_reg):
                    f_reg = f_reg.merge(p_reg.drop(columns="days"), on=["regime", "label"], how="left")
                if len(p_st):
                    f_st = f_st.merge(p_st.drop(columns=["days", "start", "end"]), on="window", how="left")
        reg.append(f_reg.assign(model=model))
        st.append(f_st.assign(model=model))
    return pd.concat(reg, ignore_index=True), pd.concat(st, ignore_index=True)
