"""Drift on real features (a shifted copy is flagged, an unshifted one is not), decay, importance, trigger."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from deepq.features.registry import compute_features, resolve
from deepq.monitor.drift import feature_drift, psi
from deepq.monitor.importance import native_importance, permutation_importance
from deepq.monitor.performance import daily_performance, rolling_performance
from deepq.monitor.policy import Thresholds, assess, check_and_retrain

NAMES = ["ret_1", "ret_21", "vol_21", "rsi_14", "ma_gap_20", "volume_z_21", "hl_range", "mom_12_1"]


@pytest.fixture(scope="module")
def real_cells(sample_panel):
    """Feature values of every defined (date, symbol) cell of the real sample, 2016-2019, shuffled."""
    feats = compute_features(sample_panel, resolve(NAMES))
    rows = sample_panel.dates >= np.datetime64("2016-01-01")
    cells = feats[rows].reshape(-1, len(NAMES))
    cells = cells[np.isfinite(cells).all(axis=1)]
    return cells[np.random.default_rng(0).permutation(len(cells))]


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift(rng):
    a = rng.normal(size=20_000)
    assert psi(a, rng.normal(size=20_000)) < 0.01
    assert psi(a, rng.normal(0.5, 1.0, size=20_000)) > 0.2


def test_drift_detected_on_shifted_copy_of_real_data_not_on_unshifted(real_cells):
    half = len(real_cells) // 2
    reference, current = real_cells[:half], real_cells[half:]  # two random halves of the same period
    th = Thresholds()
    same = feature_drift(reference, current, NAMES, th.psi_alert, th.ks_pvalue, th.ks_stat)
    assert not same["drifted"].any(), same
    assert not assess(same, 0.0, pd.DataFrame(), th).alerts
    # the same real cells, shifted by half a reference IQR-scale and stretched by 30%
    iqr = np.subtract(*np.percentile(reference, [75, 25], axis=0))
    shifted = current * 1.3 + 0.5 * iqr
    moved = feature_drift(reference, shifted, NAMES, th.psi_alert, th.ks_pvalue, th.ks_stat)
    assert moved["drifted"].mean() > 0.75, moved
    a = assess(moved, 0.0, pd.DataFrame(), th)
    assert [x.kind for x in a.alerts] == ["feature_drift"] and a.retrain


def test_rolling_ic_and_accuracy_track_a_decaying_model(rng):
    dates = pd.bdate_range("2024-01-01", periods=60)
    y = rng.normal(size=(60, 30))
    good = y + rng.normal(scale=0.5, size=y.shape)
    bad = -y + rng.normal(scale=0.5, size=y.shape)
    score = np.vstack([good[:30], bad[30:]])  # the model turns bad halfway through
    frame = pd.DataFrame(
        {"date": np.repeat(dates, 30), "y_ret": y.ravel(), "score": score.ravel(), "pred": score.ravel()}
    )
    perf = rolling_performance(daily_performance(frame), window_days=10)
    assert perf["rolling_ic"].iloc[25] > 0.6 and perf["rolling_ic"].iloc[-1] < -0.6
    assert perf["rolling_accuracy"].iloc[-1] < 0.3
    kinds = {
        a.kind
        for a in assess(
            pd.DataFrame({"drifted": [], "psi": [], "feature": []}), 0.0, perf, Thresholds()
        ).alerts
    }
    assert kinds == {"ic_decay", "accuracy_decay"}


def test_retrain_runs_only_when_an_alert_calls_for_it(real_cells):
    calls = []
    th = Thresholds(retrain_on=("feature_drift",))
    half = len(real_cells) // 2
    quiet = assess(feature_drift(real_cells[:half], real_cells[half:], NAMES), 0.0, pd.DataFrame(), th)
    assert check_and_retrain(quiet, lambda: calls.append(1) or {"ref": "m:2"}).retrained is None and not calls
    loud = assess(feature_drift(real_cells[:half], real_cells[half:] + 10.0, NAMES), 0.0, pd.DataFrame(), th)
    assert check_and_retrain(loud, lambda: calls.append(1) or {"ref": "m:2"}).retrained == {"ref": "m:2"}
    assert calls == [1]
    with pytest.raises(KeyError, match="psi_alrt"):
        Thresholds.from_mapping({"psi_alrt": 0.1})


def test_permutation_importance_finds_the_feature_the_model_uses(real_cells):
    x = torch.from_numpy(np.ascontiguousarray(real_cells[:2000, None, :], dtype=np.float32))  # [B, 1, F]
    y = x[:, -1, 2].numpy().astype(np.float64)  # the label is vol_21 itself

    def run(batch: torch.Tensor) -> np.ndarray:
        return (batch[:, -1, 2:3] * 2.0 + 0.01 * batch[:, -1, 0:1]).numpy()

    imp = permutation_importance(run, x, y, NAMES, n_repeats=2)
    assert imp["feature"].iloc[0] == "vol_21" and imp["ic_drop"].iloc[0] > 0.5
    assert imp.set_index("feature").drop(index=["vol_21", "ret_1"])["ic_drop"].abs().max() < 1e-9
    assert native_importance(object(), NAMES) is None


def test_native_importance_reads_lightgbm_gain(real_cells):
    lgb = pytest.importorskip("lightgbm")
    X, y = real_cells[:3000], real_cells[:3000, 2] * 3 + 0.1 * real_cells[:3000, 0]
    model = lgb.LGBMRegressor(n_estimators=20, num_leaves=8, n_jobs=1, verbose=-1).fit(X, y)
    gain = native_importance(model, NAMES)
    assert gain is not None and gain.idxmax() == "vol_21" and gain.sum() == pytest.approx(1.0)


@pytest.mark.slow
def test_monitor_task_reports_and_retrains_a_candidate(fdr_run, tmp_path):
    from omegaconf import OmegaConf

    from deepq.export.registry import Registry
    from deepq.tasks.hydra_utils import CONFIG_DIR
    from deepq.tasks.monitor import monitor

    reg = Registry(tmp_path / "reg")
    reg.register_run(fdr_run)
    cfg = OmegaConf.merge(
        OmegaConf.load(f"{CONFIG_DIR}/monitor/default.yaml"),
        {
            "registry": str(tmp_path / "reg"),
            "out": str(tmp_path / "mon"),
            "retrain": True,
            "importance_samples": 300,
            "thresholds": {"max_drifted_share": 0.0},
        },  # any drifted feature alerts: force the retrain path
    )
    report = monitor(cfg)
    saved = json.loads((tmp_path / "mon" / "monitor_report.json").read_text())
    assert saved["model"] == "lstm_returns:1" and len(saved["drift"]) == 32 and saved["importance"]
    assert report["retrained"]["ref"] == "lstm_returns:2"
    assert (
        reg.get("lstm_returns", 2).stage == "candidate"
        and (tmp_path / "mon" / "importance_history.csv").exists()
    )


def test_monitor_task_runs_on_a_multi_input_model(tmp_path_factory, tmp_path):
    """A TFT (x, static ids, calendar): predictions, drift and permutation importance over its own inputs."""
    from omegaconf import OmegaConf

    from deepq.tasks.hydra_utils import CONFIG_DIR
    from deepq.tasks.monitor import monitor
    from tests.serve.fdr import tft_run_dir

    _, registry = tft_run_dir(tmp_path_factory)
    cfg = OmegaConf.merge(
        OmegaConf.load(f"{CONFIG_DIR}/monitor/default.yaml"),
        {
            "registry": str(registry),
            "out": str(tmp_path / "mon"),
            "retrain": False,
            "importance_samples": 200,
        },
    )
    report = monitor(cfg)
    assert report["model"] == "tft_returns:1" and report["window"]["cells"] > 0
    saved = json.loads((tmp_path / "mon" / "monitor_report.json").read_text())
    assert np.isfinite(saved["prediction_psi"]) and len(saved["drift"]) == 32 and saved["importance"]
