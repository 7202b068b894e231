"""Every plug-in x every task it supports: fit on a tiny real fold, predict, finite outputs of the right shape;
every task it does not support raises a clear error."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from deepq.baselines.boosting import Boosted
from deepq.baselines.classical import ARIMA, ETS, MSTLModel
from deepq.baselines.common import TaskNotSupported
from deepq.baselines.naive import HistoricalMean, MajorityClass, Naive, TaskNaive
from deepq.baselines.risk import QuantileCVaR, RegimeAware, TailRisk
from deepq.baselines.volatility import GARCH, HAR
from deepq.dataset.context import FoldModel
from deepq.ensemble.stacking import Stack

from .helpers import make_data, make_folds

ALL = ("returns", "direction", "signal", "risk")
FAST = dict(n_estimators=20, max_train_rows=3000, n_jobs=1)

PLUGINS: dict[str, tuple[Callable[[], FoldModel], tuple[str, ...]]] = {
    "naive": (TaskNaive, ALL),
    "historical_mean": (HistoricalMean, ("returns", "direction", "risk")),
    "majority": (MajorityClass, ("direction", "signal")),
    "zero_return": (lambda: Naive("zero_return"), ("returns",)),
    "last_return": (lambda: Naive("last_return"), ("returns", "direction")),
    "momentum_sign": (lambda: Naive("momentum_sign"), ("direction",)),
    "ewma_vol": (lambda: Naive("ewma_vol"), ("risk",)),
    "rw_vol": (lambda: Naive("rw_vol"), ("risk",)),
    "lightgbm": (lambda: Boosted("lightgbm", "lightgbm", **FAST), ALL),
    "xgboost": (lambda: Boosted("xgboost", "xgboost", **FAST), ALL),
    "catboost": (lambda: Boosted("catboost", "catboost", **FAST), ALL),
    "lightgbm_quantile": (lambda: QuantileCVaR(**FAST), ("returns", "risk")),
    "regime": (lambda: RegimeAware(**FAST), ALL),
    "tail_t": (lambda: TailRisk(tail="student_t"), ("returns",)),
    "tail_gpd": (lambda: TailRisk(tail="gpd"), ("returns",)),
    "har": (HAR, ("risk",)),
    "garch": (lambda: GARCH(max_train_days=300), ("risk",)),
    "arima": (lambda: ARIMA(max_p=1, max_q=1, max_train_days=300), ("returns", "risk")),
    "ets": (lambda: ETS(max_train_days=300), ("returns", "risk")),
    "mstl": (lambda: MSTLModel(max_train_days=300), ("returns", "risk")),
    "stack": (lambda: Stack([TaskNaive(), Naive("last_return"), HAR()], meta="ridge"), ALL),
}
# the slowest cells (per-symbol AutoARIMA searches, Markov fits) run with -m slow; one of each stays fast
SLOW = {("arima", "risk"), ("regime", "returns"), ("regime", "signal"), ("regime", "risk")}
CASES = [
    pytest.param(p, t, id=f"{p}-{t}", marks=[pytest.mark.slow] if (p, t) in SLOW else [])
    for p, (_, tasks) in PLUGINS.items()
    for t in tasks
]
NO_RANKING = {"zero_return"}  # the random walk has no cross-sectional view: its score is NaN by design
UNSUPPORTED = [(p, t) for p, (_, tasks) in PLUGINS.items() for t in ALL if t not in tasks]


def horizon(task: str) -> int:
    return 5 if task == "risk" else 1


@pytest.fixture(scope="module")
def datasets(sample_panel):
    return {t: make_data(sample_panel, t, horizon(t)) for t in ALL}


@pytest.mark.parametrize(("plugin", "task"), CASES)
def test_fit_predict_finite(plugin, task, datasets):
    data = datasets[task]
    fold = make_folds(data, 1)[0]
    model = PLUGINS[plugin][0]()
    assert isinstance(model, FoldModel)
    model.fit(data, fold)
    index = data.split_index(fold, "test")
    p = model.predict(data, index)
    m = len(index)
    assert m > 500
    outputs = [("pred", p.pred), ("score", p.score), *(p.extra or {}).items()]
    for name, values in outputs:
        assert values.shape == (m,), name
        if name == "score" and plugin in NO_RANKING:
            continue
        assert np.isfinite(values).all(), f"{plugin}/{task}: non-finite {name}"
    assert p.up.shape == (m,)
    if task == "direction":
        assert ((p.pred >= 0) & (p.pred <= 1)).all()
        assert set(np.unique(p.up)) <= {0.0, 1.0}
    if task == "signal":
        probs = np.stack([p.extra[k] for k in ("p_sell", "p_hold", "p_buy")], axis=1)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
        assert set(np.unique(p.pred)) <= {0.0, 1.0, 2.0}
    if task == "risk":  # log daily vol of a large cap: between 0.1 % and 20 % a day
        assert (p.pred > np.log(1e-3)).all() and (p.pred < np.log(0.2)).all()


@pytest.mark.parametrize(("plugin", "task"), UNSUPPORTED, ids=[f"{p}-{t}" for p, t in UNSUPPORTED])
def test_unsupported_task_is_a_clear_error(plugin, task, datasets):
    data = datasets[task]
    fold = make_folds(data, 1)[0]
    with pytest.raises(TaskNotSupported, match=task):
        PLUGINS[plugin][0]().fit(data, fold)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["returns", "risk"])
def test_gluonts_deepar_peer_on_our_fold(task, datasets):
    from deepq.baselines.peers import GluonDeepAR

    data = datasets[task]
    fold = make_folds(data, 1)[0]
    model = GluonDeepAR(max_epochs=1, num_batches_per_epoch=10, num_samples=20)
    model.fit(data, fold)
    index = data.split_index(fold, "test")
    p = model.predict(data, index)
    assert p.pred.shape == (len(index),) and np.isfinite(p.pred).all()
    with pytest.raises(TaskNotSupported):
        GluonDeepAR().fit(datasets["direction"], fold)
