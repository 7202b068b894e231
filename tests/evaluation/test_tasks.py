"""`deepq train` writes the evaluation; `deepq plan` draws folds; `deepq compare` builds a leaderboard over a
sweep-shaped folder of runs. Runs use a naive plug-in model so that they take seconds."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from deepq.evaluation.leaderboard import find_runs, leaderboard
from deepq.tasks import compare
from deepq.tasks.plan import plan
from deepq.tasks.train import train
from tests.conftest import compose_cfg

FAST = [
    "+model.plugin._target_=deepq.baselines.naive.Naive",
    "+model.plugin.name=last_return",
    "split.train_years=3",
    "split.test_years=1",
    "split.max_folds=3",
    "split.val_days=42",
    "export=false",
    "evaluation.n_boot=100",
    "data.start=2010-01-01",
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A Hydra-multirun-shaped folder: sweep/0 and sweep/1, two configurations of the same model."""
    root = tmp_path_factory.mktemp("sweep")
    for i, q in enumerate((0.1, 0.2)):
        cfg = compose_cfg(root / str(i), [*FAST, f"evaluation.portfolios.1.quantile={q}", "n_trials=2"])
        train(cfg)
    return root


def test_run_writes_evaluation(sweep):
    run = sweep / "0"
    metrics = json.loads((run / "metrics.json").read_text())
    ev = metrics["evaluation"]
    assert ev["primary_portfolio"] == "ls_decile_5d_buffered"
    targets = pd.DataFrame(ev["targets"])
    assert len(set(targets["target"])) == 8  # every seed target listed, measured or not
    port = pd.DataFrame(ev["portfolios"])
    assert set(port["portfolio"]) == {"ls_decile_daily", "ls_decile_5d_buffered", "top20_5d", "cvar_21d"}
    assert (port["dsr_trials"] == 8).all()  # 2 configurations x 4 portfolio constructions
    assert all(math.isfinite(v) for v in port["sharpe"])
    daily = pd.read_parquet(run / "portfolio_returns.parquet")
    assert "benchmark" in set(daily["portfolio"])


def test_compare_builds_leaderboard_over_a_multirun_folder(sweep, capsys):
    compare.main([str(sweep)])
    html = (sweep / "leaderboard.html").read_text()
    md = (sweep / "leaderboard.md").read_text()
    assert "last_return" in md and "pbo" in md and "data:image/png;base64" in html
    board = leaderboard(find_runs([sweep]))
    assert set(board["run"]) == {f"{sweep.name}/0", f"{sweep.name}/1"}
    assert board["sharpe"].is_monotonic_decreasing or board["sharpe"].isna().any()
    # each run's own model is a row; a baseline scored on the same rows in both runs is one row
    assert (board["model"] == "last_return").sum() == 2
    assert (board["model"] == "always_up").sum() == 1 and (board["model"] == "zero_return").sum() == 1


def test_a_degenerate_run_is_flagged_in_verdict_report_and_leaderboard(sweep, tmp_path):
    """`deepq train` of a model that gives every stock of a date the same score: the verdict, the report's red
    banner and `deepq compare` all name it; the real ranking run beside it is not marked."""
    fast = [o for o in FAST if not o.startswith("+model.plugin")]
    plugin = ["+model.plugin._target_=tests.evaluation.degenerate.MarketMean"]
    train(compose_cfg(tmp_path / "flat", [*fast, *plugin]))
    metrics = json.loads((tmp_path / "flat" / "metrics.json").read_text())
    assert "DEGENERATE market_mean" in metrics["run"]["verdict"]
    assert "dates had all scores tied and count as 0" in metrics["run"]["verdict"]
    html = (tmp_path / "flat" / "report.html").read_text()
    assert '<div class="banner" id="degenerate"><b>Degenerate forecaster: market_mean.</b>' in html
    assert 'class="banner"' not in (sweep / "0" / "report.html").read_text()

    compare.main([str(sweep / "0"), str(tmp_path / "flat"), "--out", str(tmp_path / "board")])
    board = leaderboard(find_runs([sweep / "0", tmp_path / "flat"])).set_index("model")
    assert board.loc["market_mean", "degenerate"] == "DEGENERATE"
    assert board.loc["last_return", "degenerate"] == ""
    md = (tmp_path / "board" / "leaderboard.md").read_text()
    assert md.startswith("# deepq leaderboard\n\n**DEGENERATE") and "flat:market_mean" in md
    assert '<td class="miss"><b>DEGENERATE</b></td>' in (tmp_path / "board" / "leaderboard.html").read_text()


@pytest.mark.slow  # rebuilds the panel: about 15 s of CPU
def test_compare_reevaluate_rebuilds_report(sweep):
    run = sweep / "1"
    before = json.loads((run / "metrics.json").read_text())["evaluation"]["portfolios"]
    (run / "report.html").unlink()
    compare.main([str(run), "--reevaluate", "--out", str(sweep / "re")])
    after = json.loads((run / "metrics.json").read_text())["evaluation"]["portfolios"]
    assert (run / "report.html").is_file() and (sweep / "re" / "leaderboard.md").is_file()
    assert [r["sharpe"] for r in before] == pytest.approx([r["sharpe"] for r in after])


def test_plan_prints_and_draws(tmp_path):
    cfg = compose_cfg(tmp_path, ["split.train_years=3", "split.test_years=2"])
    folds, picture = plan(cfg)
    assert len(folds) >= 5 and picture.stat().st_size > 5000
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
