"""The Parquet feature cache: a rerun reads instead of recomputing; any change of data or feature set misses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepq.features import cache
from deepq.features.registry import compute_features, resolve


@pytest.fixture
def specs():
    return resolve(["ret_5", "rsi_7", "a158_kmid", "cs_z_ret_21", "w_ret_4", "parkinson_21"])


def _no_compute(*_a, **_k):
    raise AssertionError("features were recomputed although the cache holds them")


def test_rerun_reads_the_cache(sample_panel, specs, tmp_path, monkeypatch):
    first = cache.cached_compute_features(sample_panel, specs, tmp_path)
    files = list(tmp_path.glob("features-*.parquet"))
    assert len(files) == 1
    np.testing.assert_array_equal(first, compute_features(sample_panel, specs))
    monkeypatch.setattr(cache, "compute_features", _no_compute)
    second = cache.cached_compute_features(sample_panel, specs, tmp_path)
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float32 and second.shape == first.shape


def test_key_changes_with_data_and_feature_set(sample_panel, specs, tmp_path):
    base = cache.cache_path(tmp_path, sample_panel, specs)
    assert cache.cache_path(tmp_path, sample_panel, specs) == base  # deterministic
    close = sample_panel["close"].copy()
    close[-1, 0] *= 1.0001
    changed = dataclasses.replace(sample_panel, fields={**sample_panel.fields, "close": close})
    assert cache.cache_path(tmp_path, changed, specs) != base
    assert cache.cache_path(tmp_path, sample_panel, specs[:-1]) != base
    assert cache.cache_path(tmp_path, sample_panel, specs[::-1]) != base


def test_a_torn_or_foreign_file_is_recomputed(sample_panel, specs, tmp_path):
    path = cache.cache_path(tmp_path, sample_panel, specs)
    path.write_bytes(b"not parquet")
    values = cache.cached_compute_features(sample_panel, specs, tmp_path)
    np.testing.assert_array_equal(values, compute_features(sample_panel, specs))
    assert cache.read_features(path, sample_panel.shape, [s.name for s in specs]) is not None
    assert cache.read_features(path, (3, 3), [s.name for s in specs]) is None  # shape mismatch


def test_build_panel_data_reuses_the_cache(tmp_path, monkeypatch):
    from deepq.tasks.common import build_panel_data
    from tests.conftest import compose_cfg

    cfg = compose_cfg(
        tmp_path,
        [
            f"feature_cache_dir={tmp_path / 'fc'}",
            "features.names=[ret_1,rsi_7,w_ret_1]",
            "data.symbols=[AAPL,JPM,XOM,SPY]",
            "data.start=2017-01-01",
            "data.end=2018-12-31",
        ],
    )
    first = build_panel_data(cfg)
    assert len(list((tmp_path / "fc").glob("*.parquet"))) == 1
    monkeypatch.setattr(cache, "compute_features", _no_compute)
    second = build_panel_data(cfg)
    np.testing.assert_array_equal(first.features, second.features)
    assert second.feature_names == ("ret_1", "rsi_7", "w_ret_1")
