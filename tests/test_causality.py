"""Causality: perturbing prices after date t changes nothing that is available at t.

That covers every feature value at rows <= t, the normaliser fitted on a window ending at t, and every
training label whose span ends at or before t.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepq.data.panel import Panel
from deepq.dataset.labels import label_span, make_labels
from deepq.dataset.normalize import fit_normalizer
from deepq.features.registry import compute_features, registry
from tests.conftest import SLICE_SYMBOLS, sample_slice


def perturb_after(panel: Panel, t: int, rng: np.random.Generator) -> Panel:
    fields = {}
    for name, arr in panel.fields.items():
        a = arr.copy()
        shock = rng.lognormal(0.0, 0.3, size=a[t + 1 :].shape)
        a[t + 1 :] = a[t + 1 :] * shock
        fields[name] = a
    # keep OHLC consistent enough for range features: high >= max(open, close), low <= min
    # (after t only: the real data has a few sub-1e-6 OHLC violations before t that must stay as they are)
    fields["high"][t + 1 :] = np.fmax(fields["high"], np.fmax(fields["open"], fields["close"]))[t + 1 :]
    fields["low"][t + 1 :] = np.fmin(fields["low"], np.fmin(fields["open"], fields["close"]))[t + 1 :]
    return dataclasses.replace(panel, fields=fields)


@pytest.fixture(scope="module")
def feature_panel() -> Panel:
    """The 10-stock + SPY sample slice plus the sector ETFs of eight of its stocks, so the sector-relative
    features are exercised (XLRE and XLC start late: AMT and NFLX exercise the documented SPY fallback)."""
    return sample_slice([*SLICE_SYMBOLS, "XLK", "XLF", "XLE", "XLV", "XLP", "XLI", "XLU", "XLB"])


@pytest.fixture(scope="module")
def perturbed(feature_panel):
    # the 10-stock + SPY slice plus eight sector ETFs, so the sector-relative features are exercised too
    t = feature_panel.date_index("2018-06-29")
    other = perturb_after(feature_panel, t, np.random.default_rng(1))
    return feature_panel, other, t


@pytest.mark.parametrize("name", sorted(registry()))
def test_feature_is_causal(perturbed, name):
    base, other, t = perturbed
    spec = registry()[name]
    full = compute_features(base, [spec])
    a = full[: t + 1]
    b = compute_features(other, [spec])[: t + 1]
    np.testing.assert_array_equal(
        a, b, err_msg=f"feature {name} changed at or before t when only later prices moved"
    )
    # and it is finite once its lookback is satisfied, where a stock trades
    later = full[spec.lookback + 5 :, :, 0]
    trades = np.isfinite(base["close"][spec.lookback + 5 :]) & base.mask(("stock",))[None, :]
    assert np.isfinite(later[trades]).mean() > 0.99, name


@pytest.mark.parametrize(
    "task,h", [("returns", 1), ("returns", 5), ("direction", 1), ("signal", 3), ("risk", 21)]
)
def test_labels_known_at_t_do_not_move(perturbed, task, h):
    base, other, t = perturbed
    span = label_span(h, task)
    known = t - span + 1  # labels of rows < known end at or before t
    a, b = make_labels(base, task, h)[:known], make_labels(other, task, h)[:known]
    np.testing.assert_array_equal(a, b)
    # the label of row `known` reaches t+1 and must see the perturbation (the check has teeth)
    assert not np.array_equal(
        make_labels(base, task, h)[known : known + 3], make_labels(other, task, h)[known : known + 3]
    )


def test_normaliser_fitted_on_window_ignores_later_prices(perturbed):
    base, other, t = perturbed
    specs = list(registry().values())
    rows = np.arange(300, t + 1)
    tradable = np.isfinite(base["close"])
    n1 = fit_normalizer(compute_features(base, specs), rows, tradable)
    n2 = fit_normalizer(compute_features(other, specs), rows, tradable)
    np.testing.assert_array_equal(n1.center, n2.center)
    np.testing.assert_array_equal(n1.scale, n2.scale)


def test_lags_longer_than_the_panel_are_undefined_not_an_error(sample_panel):
    import dataclasses

    short = dataclasses.replace(
        sample_panel,
        dates=sample_panel.dates[:100],
        fields={k: v[:100] for k, v in sample_panel.fields.items()},
    )
    values = compute_features(short, [registry()["ret_252"], registry()["mom_12_1"]])
    assert values.shape[0] == 100 and np.isnan(values).all()
