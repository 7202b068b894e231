"""Feature store: offline answers equal the computed features as of each date; online answers are the latest."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pandas as pd
import pytest

from deepq.features.registry import compute_features, resolve
from deepq.features.store import EmbeddedOnline, FeatureStore, RedisOnline

NAMES = ["ret_1", "rsi_7", "a158_kmid", "cs_z_ret_21", "w_ret_4", "m_ret_1", "day_of_week", "beta_252"]


@pytest.fixture(scope="module")
def specs():
    return resolve(NAMES)


@pytest.fixture(scope="module")
def store(sample_panel, specs):
    return FeatureStore.materialize(sample_panel, specs)


def test_offline_equals_computed_features_as_of_each_date(sample_panel, specs, store):
    rng = np.random.default_rng(3)
    computed = compute_features(sample_panel, specs)
    syms = list(rng.choice(sample_panel.symbols, 200))
    # calendar days, weekends and holidays included: each must map to the last session on or before it
    days = pd.Timestamp("2015-03-01") + pd.to_timedelta(rng.integers(0, 1700, 200), unit="D")
    out = store.get_historical_features(syms, days)
    assert list(out.columns[:3]) == ["symbol", "date", "as_of"] and list(out.columns[3:]) == NAMES
    for i, (s, d) in enumerate(zip(syms, days, strict=True)):
        t = sample_panel.date_index(d)
        assert out["as_of"].iloc[i] <= d and out["as_of"].iloc[i] == pd.Timestamp(sample_panel.dates[t])
        np.testing.assert_array_equal(
            out.iloc[i, 3:].to_numpy(dtype=np.float32), computed[t, sample_panel.symbol_index(s)]
        )


def test_offline_never_returns_later_information(sample_panel, specs):
    """A store built on data that differs only after date d answers queries at or before d identically."""
    from tests.test_causality import perturb_after

    t = sample_panel.date_index("2017-06-30")
    other = perturb_after(sample_panel, t, np.random.default_rng(5))
    a = FeatureStore.materialize(sample_panel, specs)
    b = FeatureStore.materialize(other, specs)
    syms = list(sample_panel.symbols) * 3
    days = ["2017-06-30"] * len(sample_panel.symbols) + ["2017-07-01"] * len(sample_panel.symbols)
    days += ["2016-02-29"] * len(sample_panel.symbols)
    pd.testing.assert_frame_equal(
        a.get_historical_features(syms, days), b.get_historical_features(syms, days)
    )
    later = ["2017-07-05"] * len(sample_panel.symbols)
    assert not a.get_historical_features(syms[: len(later)], later).equals(
        b.get_historical_features(syms[: len(later)], later)
    )


def test_offline_before_first_session_is_nan(store):
    out = store.get_historical_features(["AAPL"], ["2014-12-31"])
    assert out.iloc[0, 3:].isna().all() and pd.isna(out["as_of"].iloc[0])


def test_online_equals_latest_vector(sample_panel, specs, store):
    computed = compute_features(sample_panel, specs)
    close = sample_panel["close"]
    for s in ("AAPL", "SPY", "NFLX"):
        j = sample_panel.symbol_index(s)
        last = np.flatnonzero(np.isfinite(close[:, j]))[-1]
        np.testing.assert_array_equal(store.get_online_features([s])[0], computed[last, j])
    sub = store.get_online_features(["JPM", "XOM"], ["w_ret_4", "ret_1"])
    T = len(sample_panel.dates) - 1
    expected = computed[T][[sample_panel.symbol_index("JPM"), sample_panel.symbol_index("XOM")]][:, [4, 0]]
    np.testing.assert_array_equal(sub, expected)


def test_unknown_symbol_or_feature_is_named(store):
    with pytest.raises(KeyError, match="ZZZZ"):
        store.get_online_features(["ZZZZ"])
    with pytest.raises(KeyError, match="nope"):
        store.get_online_features(["AAPL"], ["nope"])
    with pytest.raises(KeyError, match="ZZZZ"):
        store.get_historical_features(["ZZZZ"], ["2016-01-04"])


def test_embedded_backend_is_the_default(store):
    assert isinstance(store.online, EmbeddedOnline)


@pytest.mark.redis
def test_redis_online_matches_embedded(sample_panel, specs, store):
    url = os.environ.get("DEEPQ_REDIS_URL")
    if not url:
        pytest.skip("DEEPQ_REDIS_URL is not set (source .ci/services.sh)")
    ns = f"deepq:test:{uuid.uuid4().hex[:8]}"
    backend = RedisOnline(url, namespace=ns)
    try:
        remote = FeatureStore.materialize(sample_panel, specs, online=backend)
        assert backend.names() == NAMES
        syms = list(sample_panel.symbols)
        np.testing.assert_array_equal(remote.get_online_features(syms), store.get_online_features(syms))
        np.testing.assert_array_equal(
            remote.get_online_features(["AAPL"], ["rsi_7"]), store.get_online_features(["AAPL"], ["rsi_7"])
        )
        with pytest.raises(KeyError, match="ZZZZ"):
            remote.get_online_features(["AAPL", "ZZZZ"])
        # the kept-open read connection is dropped by the server: the next read reconnects once
        backend._client.client_kill_filter(_id=backend._command("CLIENT", "ID"))
        np.testing.assert_array_equal(
            remote.get_online_features(["AAPL"]), store.get_online_features(["AAPL"])
        )
    finally:
        backend.close()
        backend._client.delete(f"{ns}:vec", f"{ns}:names")
