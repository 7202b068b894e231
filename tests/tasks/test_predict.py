"""`deepq predict` over a real registered run: parity with the run's out-of-fold predictions, the date
selection (a weekend, a day after the data, the sessions after training), the written files and the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepq.tasks.predict import PredictError, main, open_scorer, predict, select_dates
from tests.serve.fdr import exported_fold_oof, registry_with_run


@pytest.fixture(scope="module")
def registry(fdr_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict") / "registry"
    registry_with_run(root, fdr_run)
    return root


@pytest.fixture(scope="module")
def oof(fdr_run):
    return exported_fold_oof(fdr_run)


def test_predictions_equal_the_runs_out_of_fold_predictions(registry, oof):
    days = sorted(oof["date"].unique())
    picked = [str(pd.Timestamp(d).date()) for d in (days[0], days[len(days) // 2], days[-1])]
    got = predict("lstm_returns:1", dates=picked, registry=registry)
    scored = got[got["in_universe"]]
    want = oof[oof["date"].isin(pd.to_datetime(picked))]
    merged = want.merge(scored, on=["date", "symbol"], suffixes=("_oof", ""), validate="one_to_one")
    assert len(merged) == len(want) == len(scored) > 20  # the same cells are scored, no more, no fewer
    np.testing.assert_allclose(merged["pred"], merged["pred_oof"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(merged["score"], merged["score_oof"], rtol=0, atol=1e-6)
    assert np.ptp(merged["pred"]) > 0  # a constant model would make parity trivial
    assert set(got["model"]) == {"lstm_returns:1"} and got["data_fingerprint"].nunique() == 1
    assert got.loc[~got["in_universe"], "pred"].isna().all()  # out of the universe: a row, no score


def test_since_training_end_scores_every_later_session_and_symbols_filter(registry):
    scorer = open_scorer("lstm_returns:1", registry)
    dates = scorer.source.panel.dates
    rows = select_dates(dates, scorer.train_end, since_training_end=True)
    assert dates[rows[0]] > scorer.train_end and rows[-1] == len(dates) - 1
    assert len(rows) == int((dates > scorer.train_end).sum())
    got = predict("lstm_returns:1", since_training_end=True, symbols=["AAPL", "JPM"], registry=registry)
    assert set(got["symbol"]) == {"AAPL", "JPM"} and got["date"].nunique() == len(rows)
    assert got["data_as_of"].iloc[0] == pd.Timestamp(dates[-1])


def test_a_weekend_or_a_date_after_the_data_is_an_error_naming_the_last_session(registry):
    scorer = open_scorer("lstm_returns:1", registry)
    dates, last = scorer.source.panel.dates, str(scorer.source.panel.dates[-1])
    with pytest.raises(PredictError, match=f"after the last session.*{last}"):
        select_dates(dates, scorer.train_end, dates=["2099-01-01"])
    with pytest.raises(PredictError, match="not a session"):
        select_dates(dates, scorer.train_end, dates=["2024-06-22"])  # a Saturday
    with pytest.raises(PredictError, match="--since-training-end"):
        select_dates(dates, scorer.train_end)


def test_cli_writes_parquet_and_csv_atomically(registry, tmp_path, capsys):
    out = tmp_path / "p.parquet"
    argv = ["--registry", str(registry), "--date", "2024-06-28", "--symbols", "AAPL,XOM", "--out", str(out)]
    main([*argv, "--csv"])
    frame = pd.read_parquet(out)
    assert list(frame["symbol"]) == ["AAPL", "XOM"] and frame["pred"].notna().all()
    csv = pd.read_csv(out.with_suffix(".csv"))
    np.testing.assert_allclose(csv["pred"], frame["pred"], rtol=0, atol=1e-12)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind
    with pytest.raises(SystemExit, match="last session 2024-06-28"):
        main(["--registry", str(registry), "--date", "2024-06-29"])
