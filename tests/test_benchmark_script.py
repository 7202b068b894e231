"""scripts/benchmark.py: the configurations it runs and Qlib's table it reads back from a real run."""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepq.dataset.targets import MIN_NAMES
from deepq.evaluation.metrics import daily_rank_ic
from deepq.tasks.train import train
from tests.conftest import compose_cfg

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"


def bench():
    spec = importlib.util.spec_from_file_location("benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_args(**over) -> argparse.Namespace:
    """`benchmark.py run`'s arguments that overrides() reads, CPU-sized; `over` replaces any of them."""
    base = dict(
        first_test="2012-01-01", threads=2, max_folds=None, trainer="cpu", epochs=3, samples=1000, batch=256,
        set=None,
    )  # fmt: skip
    return argparse.Namespace(**(base | over))


def test_before_is_raw_mse_and_after_the_cross_sectional_design():
    b = bench()
    args = run_args()
    boost_before = b.overrides("before", "lightgbm", "default", "next_open", 1, args)
    assert {
        "target=raw",
        "model.plugin.early_stopping_metric=loss",
        "model.plugin.max_train_rows=300000",  # the previous booster's subsample; `after` trains on every row
        "task.execution=next_open",
        "seed=1",
    } <= set(boost_before)
    assert {"split.train_years=10", "split.test_years=1", "split.first_test=2012-01-01"} <= set(boost_before)
    net_after = b.overrides("after", "lstm", "alpha158", "next_close", 0, args)
    assert {
        "target=cs_rank",
        "ranking=ic",
        "datamodule.batching=date",
        "early_stopping.monitor=val_rank_ic",
    } <= set(net_after)
    assert "features=alpha158" in net_after and "trainer=cpu" in net_after
    boost_after = b.overrides("after", "lightgbm", "default", "next_open", 0, args)
    assert not any("max_train_rows" in o for o in boost_after)
    blend_after = b.overrides("after", "booster_blend", "default", "next_open", 0, args)
    assert "target=cs_rank" in blend_after and not any("early_stopping_metric" in o for o in blend_after)


def test_the_blend_members_stop_on_rank_ic_above_a_tree_floor(tmp_path):
    """booster_blend's `after` row adds no early-stopping override: its members carry rank IC and the floor."""
    from deepq.tasks.common import build_model

    blend = build_model(compose_cfg(tmp_path, ["model=booster_blend", "target=cs_rank"]))
    assert blend.meta == "rank_mean"
    assert [(m.library, m.early_stopping_metric, m.min_trees) for m in blend.members] == [
        ("lightgbm", "rank_ic", 50), ("xgboost", "rank_ic", 50), ("catboost", "rank_ic", 50),
    ]  # fmt: skip


def test_the_table_reads_a_finished_run(tmp_path, capsys):
    run = tmp_path / "after" / "lightgbm" / "default" / "next_close" / "seed0"
    over = [
        "debug=fdr", "model=lightgbm", "target=cs_rank", "model.plugin.early_stopping_metric=rank_ic",
        "data.start=2016-01-01", "split.max_folds=1", "feature_cache_dir=null", "export=false",
    ]  # fmt: skip
    train(compose_cfg(run, over))
    b = bench()
    figs = b.run_figures(run)
    by_model = {r["model"]: r for r in json.loads((run / "metrics.json").read_text())["by_model"]}
    # the same convention as the run's own evaluation (ties at average rank, thin dates left out)
    np.testing.assert_allclose(figs["rank_ic"], by_model["lightgbm"]["rank_ic"], atol=1e-9)
    assert 0 < figs["distinct"] <= 1 and figs["dates"] > 100
    oof = (
        pd.read_parquet(run / "predictions.parquet")
        .query("model == 'lightgbm'")
        .dropna(subset=["score", "y_ret"])
    )
    per = oof.groupby("date")["score"].agg(["nunique", "size"])
    share = (per["nunique"] / per["size"])[per["size"] >= MIN_NAMES]  # the guard's dates: a cross-section
    assert figs["distinct95"] == pytest.approx(float((share >= 0.95).mean()))
    assert figs["distinct"] == pytest.approx(float(share.median()))
    books = pd.read_parquet(run / "portfolio_returns.parquet")
    ls = books[(books["model"] == "lightgbm") & (books["portfolio"] == "ls_decile_daily")]["net"]
    np.testing.assert_allclose(figs["ls_ann_return"], ls.mean() * 252)
    assert figs["ls_mdd"] <= 0
    assert b.table(argparse.Namespace(out=str(tmp_path))) == 0
    out = capsys.readouterr().out
    assert "| after | lightgbm | default | next_close | 1 |" in out
    assert "deflated Sharpe over 1 configurations" in out and "rank IC by year" in out

    # a second seed: the same run with its scores perturbed; the ensemble averages the two seeds' per-date ranks
    seed1 = run.parent / "seed1"
    shutil.copytree(run, seed1)
    pred = pd.read_parquet(seed1 / "predictions.parquet")
    noise = np.random.default_rng(1).normal(0, pred["score"].std(), len(pred))
    pred["score"] = pred["score"] + noise
    pred.to_parquet(seed1 / "predictions.parquet")
    ens = b.seed_ensemble_rank_ic([run, seed1])
    both = [p.query("model == 'lightgbm'").dropna(subset=["score", "y_ret"]) for p in (oof, pred)]
    mean_rank = sum(p.groupby("date")["score"].rank(pct=True).to_numpy() for p in both) / 2
    by_hand = daily_rank_ic(both[0].assign(score=mean_rank))
    np.testing.assert_allclose(ens.to_numpy(), by_hand.to_numpy(), atol=1e-12)
    assert ens.mean() != pytest.approx(figs["rank_ic"])  # the second seed counted
    assert b.table(argparse.Namespace(out=str(tmp_path))) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "| after | lightgbm" in line)
    assert row.startswith("| after | lightgbm | default | next_close | 2 |")
    assert row.endswith(f"| {ens.mean():.4f} ({ens.mean() / ens.std(ddof=1) * np.sqrt(len(ens)):.1f}) |")


def test_the_table_gives_a_seed_ensembles_members(tmp_path, capsys):
    """A row trained with ensemble.seeds=N: the table prints its members' rank IC beside the ensemble's."""
    run = tmp_path / "after" / "lightgbm" / "default" / "next_close" / "seed0"
    over = [
        "debug=fdr", "model=lightgbm", "target=cs_rank", "data.start=2016-01-01", "split.max_folds=1",
        "feature_cache_dir=null", "export=false", "ensemble.seeds=2", "model.plugin.max_train_rows=4000",
    ]  # fmt: skip
    train(compose_cfg(run, over))
    b = bench()
    members = b.member_rank_ics(run)
    assert members == json.loads((run / "metrics.json").read_text())["run"]["seed_spread"]["rank_ic"]
    assert len(members) == 2 and members[0] != members[1]
    assert b.table(argparse.Namespace(out=str(tmp_path))) == 0
    assert f"its 2 members' rank IC {b.pm(members, 4)}" in capsys.readouterr().out


def test_master_preset_is_the_benchmarked_network(tmp_path):
    """experiment=master_returns trains what the README's network row measured (benchmark.py, lookback 1,
    16 dates a batch)."""
    b = bench()
    args = run_args(
        threads=1,
        epochs=6,
        samples=100_000_000,  # more than any window holds: every training window each epoch
        batch=1024,
        set=["datamodule.lookback=1", "datamodule.dates_per_batch=16"],
    )
    measured = compose_cfg(tmp_path / "b", b.overrides("after", "master", "default", "next_open", 0, args))
    preset = compose_cfg(tmp_path / "p", ["experiment=master_returns"])
    for key in ("model", "task", "features", "split", "early_stopping", "data"):
        assert preset[key] == measured[key], key
    for key in ("lookback", "batching", "dates_per_batch", "batch_size", "normalization"):
        assert preset.datamodule[key] == measured.datamodule[key], key
    assert preset.datamodule.max_train_samples is None and preset.trainer.max_epochs == 6
    assert preset.early_stopping.monitor == "val_rank_ic" and preset.task.execution == "next_open"
