"""The library as a whole: 150+ features across the families, selectable by name or family in config,
listed by `deepq features list`; multi-timeframe bars use completed periods only; absent ETFs degrade."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate

from deepq.features.registry import compute_features, registry, resolve
from deepq.tasks import features as features_task
from tests.conftest import compose_cfg

FAMILIES = {
    "technical",
    "multi_timeframe",
    "microstructure",
    "cross_section",
    "regime",
    "calendar",
    "alpha158",
}


def test_registry_has_150_plus_features_in_every_family():
    reg = registry()
    assert len(reg) >= 150
    assert {s.family for s in reg.values()} >= FAMILIES
    for s in reg.values():
        assert s.description and s.lookback >= 0, s.name


@pytest.mark.parametrize("choice,family", [("technical", "technical"), ("alpha158", "alpha158")])
def test_feature_set_selected_by_name_in_config(tmp_path, choice, family):
    cfg = compose_cfg(tmp_path, [f"features={choice}"])
    specs = instantiate(cfg.features)
    assert specs and {s.family for s in specs} == {family}
    assert len(instantiate(compose_cfg(tmp_path, ["features=all"]).features)) == len(registry())


def test_default_plus_cross_section_is_the_union(tmp_path):
    """features=default_cross_section extends the default set by the whole cross_section family, in order."""
    default = [s.name for s in instantiate(compose_cfg(tmp_path, ["features=default"]).features)]
    both = [s.name for s in instantiate(compose_cfg(tmp_path, ["features=default_cross_section"]).features)]
    family = [s.name for s in resolve(families=["cross_section"])]
    assert both[: len(default)] == default
    assert set(both) == set(default) | set(family) and len(both) == len(set(both)) == 76


def test_cli_lists_features(capsys):
    features_task.main(["list", "--family", "microstructure", "--names"])
    names = capsys.readouterr().out.split()
    assert names == [s.name for s in resolve(families=["microstructure"])]
    features_task.main(["list"])
    out = capsys.readouterr().out
    assert "a158_kmid" in out and "yang_zhang_21" in out


def test_weekly_features_change_only_when_a_week_completes(sample_panel):
    w = compute_features(sample_panel, resolve(["w_ret_1"]))[:, 0, 0]
    dates = pd.DatetimeIndex(sample_panel.dates)
    week = dates.to_period("W-SUN")
    last_of_week = np.append(week[1:] != week[:-1], True)
    changed = np.append(False, (w[1:] != w[:-1]) & np.isfinite(w[1:]) & np.isfinite(w[:-1]))
    assert changed.sum() > 100
    assert not changed[~last_of_week].any(), "a weekly feature moved mid-week"
    # and it is the completed week's close-to-close return
    j = 0
    close = pd.Series(sample_panel["close"][:, j], index=dates)
    weekly = np.log(close.groupby(week).last()).diff()
    t = int(np.flatnonzero(last_of_week)[60])
    assert w[t] == pytest.approx(weekly.loc[week[t]], rel=1e-6)


def test_absent_sector_etfs_and_spy_degrade_gracefully(sample_panel):
    """Without the sector ETFs the sector features fall back to SPY; without SPY to the equal-weight index."""
    names = ["rs_sector_21", "beta_sector_63", "rs_spy_63", "mkt_vol_regime"]
    specs = resolve(names)
    with_spy = compute_features(sample_panel, specs)
    keep = [i for i, s in enumerate(sample_panel.symbols) if s != "SPY"]
    no_spy = dataclasses.replace(
        sample_panel,
        symbols=tuple(sample_panel.symbols[i] for i in keep),
        fields={k: v[:, keep] for k, v in sample_panel.fields.items()},
    )
    without = compute_features(no_spy, specs)
    assert np.isfinite(with_spy[300:, 0]).all() and np.isfinite(without[300:, 0]).all()
    # rs_sector with no sector ETF present equals rs vs SPY over the same horizon
    rs21 = compute_features(sample_panel, resolve(["rs_sector_21"]))[:, :, 0]
    ret21 = compute_features(sample_panel, resolve(["ret_21"]))[:, :, 0]
    spy21 = ret21[:, sample_panel.symbol_index("SPY")]
    np.testing.assert_allclose(rs21[300:, 0], ret21[300:, 0] - spy21[300:], rtol=1e-5, atol=1e-6)
