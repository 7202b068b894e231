"""`ensemble.seeds=N`: N members per fold, seeds seed..seed+N-1, forecasts averaged, the per-seed spread
reported; a neural ensemble exports as one module whose output is the members' mean."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepq.ensemble.seeds import MeanOfNets, SeedEnsemble
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


def test_neural_ensemble_predicts_and_exports_the_members_mean(tmp_path):
    from hydra.utils import instantiate

    from deepq.dataset.folds import Fold  # noqa: F401  (the split builds them)

    cfg = compose_cfg(tmp_path, [*FAST, "model.hidden_size=8"])
    data = build_panel_data(cfg)
    fold = instantiate(cfg.split)(
        dates=data.panel.dates, purge_days=purge_days(cfg), min_history_days=cfg.universe.min_history_days
    )[0]
    ens = SeedEnsemble(lambda s: build_one_model(cfg, s), [0, 1], "returns")
    ens.fit(data, fold)
    index = data.split_index(fold, "test")[:300]
    got = ens.predict(data, index)
    members = [m.predict(data, index) for m in ens.members]
    assert not np.allclose(members[0].pred, members[1].pred)  # two seeds, two networks
    np.testing.assert_allclose(got.pred, (members[0].pred + members[1].pred) / 2, rtol=1e-6, atol=1e-9)
    assert len(np.unique(got.score)) > 0.95 * len(got.score)

    assert ens.exportable is not None
    net, example, meta = ens.exportable(index)
    assert isinstance(net, MeanOfNets) and meta["ensemble_seeds"] == [0, 1]
    example = example if isinstance(example, tuple) else (example,)
    with torch.no_grad():
        want = torch.stack([m(*example) for m in net.members]).mean(0)
        traced = torch.jit.trace(net.eval(), example)
        torch.testing.assert_close(traced(*example), want)
