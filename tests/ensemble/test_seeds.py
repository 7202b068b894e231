"""`ensemble.seeds=N`: N members per fold, seeds seed..seed+N-1, forecasts averaged (returns members weighed
by 1 / their validation spread), the per-seed spread reported; a neural ensemble exports as one module whose
output is the members' weighted mean."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepq.dataset.context import Predictions
from deepq.ensemble.seeds import MeanOfNets, SeedEnsemble, cross_sectional_spread
from deepq.export.program import export_onnx, load_onnx
from deepq.tasks.common import build_model, build_one_model, build_panel_data, purge_days
from deepq.tasks.train import train
from tests.conftest import compose_cfg

FAST = ["debug=fdr", "data.start=2016-01-01", "split.max_folds=1", "feature_cache_dir=null"]


def test_booster_seed_ensemble_averages_members_and_reports_the_spread(tmp_path):
    # a row subsample per seed: without one LightGBM's seed changes nothing and the members would be equal
    over = [*FAST, "model=lightgbm", "model.plugin.max_train_rows=4000", "ensemble.seeds=3"]
    cfg = compose_cfg(tmp_path, over)
    model = build_model(cfg)
    assert isinstance(model, SeedEnsemble) and model.seeds == [42, 43, 44]
    assert [m.seed for m in model.members] == [42, 43, 44]  # type: ignore[attr-defined]
    train(cfg)
    run = json.loads((tmp_path / "metrics.json").read_text())["run"]
    spread = run["seed_spread"]
    assert spread["seeds"] == [42, 43, 44] and len(spread["rank_ic"]) == 3
    assert len(set(spread["rank_ic"])) == 3  # the seeds differ, so does their skill
    assert np.isfinite(spread["rank_ic_std"]) and spread["rank_ic_std"] > 0
    assert "Seed ensemble of 3: per-seed rank IC" in run["verdict"]


def test_a_model_without_a_seed_cannot_be_a_seed_ensemble(tmp_path):
    cfg = compose_cfg(tmp_path, [*FAST, "model=naive", "ensemble.seeds=2"])
    with pytest.raises(ValueError, match="takes no seed"):
        build_model(cfg)


def _first_fold(cfg):
    from hydra.utils import instantiate

    data = build_panel_data(cfg)
    fold = instantiate(cfg.split)(
        dates=data.panel.dates, purge_days=purge_days(cfg), min_history_days=cfg.universe.min_history_days
    )[0]
    return data, fold


def test_neural_ensemble_predicts_and_exports_the_members_weighted_mean(tmp_path):
    cfg = compose_cfg(tmp_path, [*FAST, "model.hidden_size=8"])
    data, fold = _first_fold(cfg)
    ens = SeedEnsemble(lambda s: build_one_model(cfg, s), [0, 1], "returns")
    ens.fit(data, fold)
    # the weights: 1 / each member's per-date score spread on the fold's validation rows, nothing later
    val = data.split_index(fold, "val")
    spread = [cross_sectional_spread(val[:, 0], m.predict(data, val).score) for m in ens.members]
    np.testing.assert_allclose(ens.weights, 1 / np.asarray(spread))
    w = ens.weights / ens.weights.sum()
    index = data.split_index(fold, "test")[:300]
    got = ens.predict(data, index)
    members = [m.predict(data, index) for m in ens.members]
    assert not np.allclose(members[0].pred, members[1].pred)  # two seeds, two networks
    np.testing.assert_allclose(
        got.pred, w[0] * members[0].pred + w[1] * members[1].pred, rtol=1e-6, atol=1e-9
    )
    assert len(np.unique(got.score)) > 0.95 * len(got.score)

    assert ens.exportable is not None
    net, example, meta = ens.exportable(index)
    assert isinstance(net, MeanOfNets) and meta["ensemble_seeds"] == [0, 1]
    np.testing.assert_allclose(meta["ensemble_weights"], w)
    example = example if isinstance(example, tuple) else (example,)
    with torch.no_grad():
        want = w[0] * net.members[0](*example) + w[1] * net.members[1](*example)
        traced = torch.jit.trace(net.eval(), example)
        torch.testing.assert_close(traced(*example), want.float())
    onnx, _ = load_onnx(export_onnx(net, example, tmp_path / "ens.onnx", meta, dynamo=False))
    torch.testing.assert_close(onnx(*example), want.float(), rtol=1e-5, atol=1e-6)


class _FeatureScore:
    """A member that scores a stock by one real feature times a fixed scale: an IC-trained network's output is
    a ranking on an arbitrary scale, and two seeds can land orders of magnitude apart."""

    name = "feature"

    def __init__(self, column: int, scale: float):
        self.column, self.scale = column, scale

    def fit(self, data, fold):
        pass

    def predict(self, data, index):
        score = self.scale * data.features[index[:, 0], index[:, 1], self.column].astype(np.float64)
        return Predictions(score, score, np.sign(score), None)


def _date_ranks(dates, score):
    from deepq.ensemble.stacking import rank_by_date

    return rank_by_date(dates, score[:, None])[:, 0]


@pytest.mark.parametrize("combine", ["scaled", "mean"])
def test_a_member_on_a_larger_scale_outvotes_the_others_only_in_a_plain_mean(tmp_path, combine):
    data, fold = _first_fold(compose_cfg(tmp_path, FAST))
    big, small = (_FeatureScore(0, 1000.0), _FeatureScore(1, 1.0))
    ens = SeedEnsemble(lambda s: [big, small][s], [0, 1], "returns", combine=combine)
    ens.fit(data, fold)
    index = data.split_index(fold, "test")
    index = index[np.isfinite(data.features[index[:, 0], index[:, 1], :2]).all(axis=1)]
    got = _date_ranks(index[:, 0], ens.predict(data, index).score)
    big_alone = _date_ranks(index[:, 0], big.predict(data, index).score)
    agree = np.corrcoef(got, big_alone)[0, 1]
    if combine == "mean":
        assert agree > 0.999  # the other member is noise beside it
    else:
        assert 0.2 < agree < 0.95  # both members count
        assert ens.weights[1] > 100 * ens.weights[0]


def test_an_unknown_combine_is_refused():
    with pytest.raises(ValueError, match="ensemble.combine"):
        SeedEnsemble(lambda s: _FeatureScore(0, 1.0), [0, 1], combine="median")  # type: ignore[arg-type]
