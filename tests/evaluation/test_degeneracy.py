"""The degeneracy guard on the shipped sample: a forecaster that gives every stock of a date the same score
(or the same score plus noise) is flagged and named in a red banner; real rankings (momentum, last return)
are not."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from deepq.dataset.crosssection import IC_CONVENTION
from deepq.evaluation.degeneracy import DegeneracySpec, degeneracy, degeneracy_table
from deepq.evaluation.evaluate import EvalOptions, evaluate_run, options_from_config
from deepq.evaluation.portfolio import PortfolioSpec
from deepq.evaluation.report import write_report
from tests.evaluation.degenerate import MarketMean


@pytest.fixture(scope="module")
def oof(sample_run) -> pd.DataFrame:
    """The sample's baselines plus two degenerate scorers on the same rows."""
    data, folds, base = sample_run
    frames = [base]
    for model in (MarketMean(), MarketMean("market_mean_jitter", noise=1e-7)):
        for fold in folds:
            index = data.split_index(fold, "test")
            p = model.predict(data, index)
            rows = base[(base["model"] == "last_return") & (base["fold"] == fold.index)]
            frames.append(rows.assign(model=model.name, pred=p.pred, score=p.score, up=p.up))
    return pd.concat(frames, ignore_index=True)


def test_guard_flags_a_market_mean_and_passes_real_rankings(oof):
    g = degeneracy_table(oof).set_index("model")
    assert "always_up" not in g.index  # no ranking score: nothing to judge
    for real in ("momentum_20", "last_return"):
        assert not g.loc[real, "degenerate"], g.loc[real]
        assert g.loc[real, "distinct_share"] > 0.95 and g.loc[real, "dispersion_ratio"] > 1.0
    tied = g.loc["market_mean"]
    assert tied["degenerate"] and tied["distinct_share"] < 0.05 and tied["tied_date_share"] == 1.0
    assert tied["distinct95_share"] == 0.0 and g.loc["market_mean_jitter", "distinct95_share"] == 1.0
    assert tied["dispersion_ratio"] < 1e-6 and "distinct scores" in tied["reasons"]
    # every score distinct, but the cross-section is a millionth of the market's move: the ratio catches it
    jitter = g.loc["market_mean_jitter"]
    assert jitter["distinct_share"] == 1.0 and jitter["degenerate"]
    assert jitter["reasons"].startswith("cross-sectional / time-series dispersion")


def test_figures_match_their_definitions(oof):
    g = oof[oof["model"] == "momentum_20"].dropna(subset=["score"])
    d = degeneracy("m", g["date"].to_numpy(), g["score"].to_numpy(), DegeneracySpec())
    assert d is not None
    by = g.groupby("date")["score"]
    assert d.distinct_share == pytest.approx((by.nunique() / by.size()).median())
    assert d.dispersion_ratio == pytest.approx(by.std(ddof=0).mean() / by.mean().std(ddof=0))
    assert d.distinct95_share == pytest.approx(((by.nunique() / by.size()) >= 0.95).mean())
    # thresholds are the configuration's: a strict enough one flags even momentum
    strict = degeneracy("m", g["date"].to_numpy(), g["score"].to_numpy(), DegeneracySpec(0.5, 10.0))
    assert strict is not None and strict.flagged and not d.flagged


def test_thresholds_come_from_the_evaluation_config():
    opt = options_from_config({"degeneracy": {"min_distinct_share": 0.8, "min_dispersion_ratio": 0.2}})
    assert opt.degeneracy == DegeneracySpec(0.8, 0.2)
    with pytest.raises(ValueError, match="min_distinct_share"):
        DegeneracySpec(min_distinct_share=1.5)


@pytest.fixture(scope="module")
def evaluated(sample_run, oof):
    data, _, _ = sample_run
    opt = replace(
        EvalOptions(n_boot=50, ic_horizons=(1,)),
        portfolios=(PortfolioSpec("ls_q20_5d", quantile=0.2, holding_days=5),),
        primary="ls_q20_5d",
    )
    return evaluate_run(oof, data, opt)


def test_evaluation_carries_the_guard_and_the_ic_convention(evaluated):
    s = evaluated.summary.set_index("model")
    assert bool(s.loc["market_mean", "degenerate"]) and not bool(s.loc["momentum_20", "degenerate"])
    # the all-tied scores count as IC 0 on every date (not dropped): the IC is exactly 0
    assert s.loc["market_mean", "rank_ic_tied_dates"] == s.loc["market_mean", "rank_ic_dates"] > 500
    assert s.loc["market_mean", "rank_ic"] == 0.0 and s.loc["momentum_20", "rank_ic_tied_dates"] == 0
    js = evaluated.to_json()
    assert js["rank_ic_convention"] == IC_CONVENTION
    flagged = {r["model"] for r in js["degeneracy"] if r["degenerate"]}
    assert flagged == {"market_mean", "market_mean_jitter"}


def test_report_shows_a_red_banner_naming_the_flagged_model(sample_run, evaluated, tmp_path):
    data, folds, _ = sample_run
    path = write_report(tmp_path / "r.html", "t", evaluated, folds, data.panel.dates, "v", "a: 1\n",
                        models=["market_mean"])  # fmt: skip
    html = path.read_text()
    banner = html[html.index('<div class="banner"') :].split("</div>")[0]
    assert "market_mean" in banner and "distinct scores per date" in banner
    assert "market_mean_jitter" not in banner and "momentum_20" not in banner  # only the run's own model
    assert 'id="guard"' in html and "DEGENERATE" in html and "ties at average rank" in html
    # the report of a real ranking model has no banner, and says so of nothing
    clean = write_report(tmp_path / "c.html", "t", evaluated, folds, data.panel.dates, "v", "a: 1\n",
                         models=["momentum_20"]).read_text()  # fmt: skip
    assert 'class="banner"' not in clean and "Baselines that tie by construction" in clean
    assert np.isfinite(evaluated.degeneracy["distinct_share"]).all()
