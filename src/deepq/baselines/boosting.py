"""Gradient boosting over the tabular view: LightGBM, XGBoost and CatBoost as FoldModels.

Each fold trains on (a uniform subsample of) `data.split_index(fold, "train")` with early stopping on the
fold's `"val"` slice, both before the purge that precedes the test block. The objective follows the task:
squared error for returns and risk, log loss for direction, multiclass log loss for signal; `quantiles`
switches regression to pinball loss (one LightGBM model per level, one multi-quantile XGBoost or CatBoost
model), sorted so the quantiles never cross; the median is the point forecast. CatBoost and LightGBM take
the sector as a native categorical feature.

`objective` swaps the returns regression for a ranking objective with dates as query groups (LightGBM
`lambdarank` / `rank_xendcg`, XGBoost `rank:pairwise` / `rank:ndcg`, CatBoost `YetiRank`; see ranking.py):
trained on `rank_levels` per-date relevance grades of the training target, predicting plain scores.
`early_stopping_metric=rank_ic` stops any of the three on the validation slice's per-date rank IC against
the realised raw return; `loss` stops on the library's own metric (MSE, or NDCG over whole dates when ranking).
A noisy validation IC often peaks at the first tree or two, and a model of one or two trees gives most stocks of
a date the same score (the degeneracy guard's ties). `min_trees` (a regression or ranker stopped on rank IC) keeps the best
validation rank IC among tree counts >= min_trees instead, with `early_stopping_rounds` of patience counted from
there (`floor_early_stopping`: a callback in each library's own early-stopping protocol, so the model keeps and
predicts with that best iteration as it would with the library's own).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from deepq.baselines.common import (
    TASKS,
    check_task,
    from_point,
    from_probs,
    non_crossing,
    sector_codes,
    subsample,
    tabular,
    targets,
)
from deepq.baselines.ranking import (
    CatBoostRankIC,
    XGBRankIC,
    check_objective,
    date_order,
    group_sizes,
    is_ranking,
    one_date_rank_ic,
    relevance,
)
from deepq.dataset.context import PanelData, Predictions
from deepq.dataset.crosssection import DateGroups, mean_rank_ic
from deepq.dataset.folds import Fold

Library = Literal["lightgbm", "xgboost", "catboost"]


def floor_early_stopping(library: str, rounds: int, min_trees: int, metric: str = "rank_ic") -> Any:
    """Early stopping on the validation `metric` (higher is better) whose best iteration has at least
    `min_trees` trees, waiting `rounds` iterations without a gain: a LightGBM callback or an XGBoost
    TrainingCallback, each ending training as the library's own early stopping does; for CatBoost a fit
    callback whose `best_iteration` the caller shrinks the model to (CatBoost's own `use_best_model` cannot
    take a floor)."""
    best: dict[str, Any] = {"score": -np.inf, "iteration": -1, "results": None}

    def seen(iteration: int, score: float) -> bool:
        """Record the iteration's score; True once `rounds` iterations passed without a gain."""
        if iteration + 1 >= min_trees and (score > best["score"] or best["iteration"] < 0):
            best.update(score=score, iteration=iteration)
        return best["iteration"] >= 0 and iteration - best["iteration"] >= rounds

    if library == "lightgbm":
        import lightgbm as lgb

        def callback(env: Any) -> None:
            stop = seen(env.iteration, next(r[2] for r in env.evaluation_result_list if r[1] == metric))
            if best["iteration"] == env.iteration:
                best["results"] = env.evaluation_result_list
            if (stop or env.iteration == env.end_iteration - 1) and best["results"] is not None:
                raise lgb.callback.EarlyStopException(best["iteration"], best["results"])

        callback.order = 30  # type: ignore[attr-defined]  # where lgb.early_stopping runs
        return callback

    if library == "catboost":

        class CatBoostFloor:  # CatBoost's callback protocol: after_iteration returns False to stop
            best_iteration = property(lambda self: best["iteration"])

            def after_iteration(self, info: Any) -> bool:
                return not seen(info.iteration - 1, float(info.metrics["validation"][metric][-1]))

        return CatBoostFloor()

    import xgboost as xgb

    class FloorStopping(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            return seen(epoch, float(list(evals_log.values())[-1][metric][-1]))

        def after_training(self, model: Any) -> Any:
            if best["iteration"] >= 0:  # else every tree predicts (fewer trained than min_trees)
                model.set_attr(best_iteration=str(best["iteration"]), best_score=str(best["score"]))
            return model

    return FloorStopping()


def quantile_names(levels: tuple[float, ...]) -> list[str]:
    return [f"q{round(q * 1000):03d}" for q in levels]  # 0.05 -> q050, 0.5 -> q500


class Boosted:
    def __init__(
        self,
        name: str,
        library: Library = "lightgbm",
        params: dict[str, Any] | None = None,
        n_estimators: int = 500,
        learning_rate: float = 0.05,
        early_stopping_rounds: int = 50,
        early_stopping_metric: Literal["loss", "rank_ic"] = "loss",
        max_train_rows: int | None = None,
        quantiles: tuple[float, ...] | None = None,
        use_sector: bool = True,
        n_jobs: int = 2,
        seed: int = 0,
        objective: str | None = None,
        rank_levels: int = 20,
        min_trees: int | None = None,
    ):
        if library not in ("lightgbm", "xgboost", "catboost"):
            raise ValueError(f"unknown boosting library {library!r}; use lightgbm, xgboost or catboost")
        self.name, self.library, self.params = name, library, dict(params or {})
        self.n_estimators, self.learning_rate = n_estimators, learning_rate
        self.early_stopping_rounds, self.max_train_rows = early_stopping_rounds, max_train_rows
        if early_stopping_metric not in ("loss", "rank_ic"):
            raise ValueError(
                f"{name}: early_stopping_metric must be loss or rank_ic, got {early_stopping_metric!r}"
            )
        check_objective(name, library, objective)
        if objective is not None and quantiles:
            raise ValueError(f"{name}: a ranking objective ({objective}) and quantiles exclude each other")
        if rank_levels < 2:
            raise ValueError(f"{name}: rank_levels must be >= 2, got {rank_levels}")
        self.objective, self.rank_levels = objective, rank_levels
        self.early_stopping_metric = early_stopping_metric
        if min_trees is not None and (early_stopping_metric != "rank_ic" or quantiles):
            raise ValueError(
                f"{name}: min_trees applies to a point or ranking model stopped on rank_ic "
                f"(early_stopping_metric=rank_ic, no quantiles); got {early_stopping_metric}, quantiles {quantiles}"
            )
        self.min_trees = min_trees
        self.quantiles = tuple(sorted(quantiles)) if quantiles else None
        # XGBoost has no native categorical here without pandas frames: it sees no sector at all
        self.use_sector = use_sector and library != "xgboost"
        self.n_jobs, self.seed = n_jobs, seed
        self.models: list[Any] = []
        self.best_iteration: dict[int, int] = {}

    def extra_features(self, data: PanelData, index: np.ndarray) -> np.ndarray | None:
        """[M, E] columns appended to the tabular view (before the sector); subclasses add e.g. regimes."""
        return None

    def design(self, data: PanelData, index: np.ndarray) -> np.ndarray:
        x = tabular(data, index, with_sector=False)
        extra = self.extra_features(data, index)
        if extra is not None:
            x = np.concatenate([x, extra.astype(np.float32)], axis=1)
        if self.use_sector:
            x = np.concatenate([x, sector_codes(data)[index[:, 1], None].astype(np.float32)], axis=1)
        return x

    # -- per-library training -------------------------------------------------------------------------
    def _kind(self, task: str) -> str:
        if is_ranking(self.objective):
            if task != "returns":
                raise ValueError(f"{self.name}: objective {self.objective} ranks stocks; use task=returns")
            return "rank"
        if task in ("returns", "risk"):
            return "quantile" if self.quantiles else "regression"
        if self.quantiles:
            raise ValueError(f"{self.name}: quantiles make sense only for returns or risk, not task {task!r}")
        return "binary" if task == "direction" else "multiclass"

    def _lightgbm(
        self,
        kind: str,
        x,
        y,
        xv,
        yv,
        cat: list[int],
        val_ic: tuple[DateGroups, np.ndarray] | None = None,
        groups: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> list[Any]:
        """`val_ic`: the validation rows' dates and raw returns, to stop on their per-date rank IC.
        `groups`: the train and validation rows per date (query groups) for a ranking objective."""
        import lightgbm as lgb

        ranking: dict[str, Any] = {}
        if kind == "rank":
            assert groups is not None
            longest = int(max(groups[0].max(), groups[1].max()))
            ranking = {
                "objective": self.objective,
                # linear gains: every grade step counts alike, so both tails of a date matter (a long-short
                # book), not just its top names as with the default 2^grade - 1
                "label_gain": list(range(self.rank_levels)),
                "lambdarank_truncation_level": longest,  # pairs across the whole date, not its top 30
            }
        base = (
            {
                "n_estimators": self.n_estimators,
                "learning_rate": self.learning_rate,
                "num_leaves": 31,
                "min_child_samples": 200,
                "subsample": 0.8,
                "subsample_freq": 1,
                "colsample_bytree": 0.8,
                "n_jobs": self.n_jobs,
                "random_state": self.seed,
                "verbose": -1,
            }
            | ranking
            | self.params
        )
        callbacks = [
            floor_early_stopping("lightgbm", self.early_stopping_rounds, self.min_trees)
            if self.min_trees and val_ic is not None
            else lgb.early_stopping(self.early_stopping_rounds, verbose=False)
        ]
        fit_kw: dict[str, Any] = {
            "eval_X": (xv,),
            "eval_y": (yv,),
            "callbacks": callbacks,
            "categorical_feature": cat or "auto",
        }
        if val_ic is not None:  # stop on the per-date rank IC of the validation slice, not its MSE
            vgroups, outcome = val_ic

            def rank_ic(_y: np.ndarray, pred: np.ndarray) -> tuple[str, float, bool]:
                return "rank_ic", mean_rank_ic(vgroups, pred, outcome), True

            base["metric"] = "None"  # the custom metric alone decides early stopping
            fit_kw["eval_metric"] = rank_ic
        if kind == "rank":
            assert groups is not None
            fit_kw |= {"group": groups[0], "eval_group": [groups[1]], "eval_at": [int(groups[1].max())]}
            return [lgb.LGBMRanker(**base).fit(x, y, **fit_kw)]
        if kind == "quantile":
            assert self.quantiles is not None
            models = []
            for q in self.quantiles:
                m = lgb.LGBMRegressor(objective="quantile", alpha=q, **base)
                models.append(m.fit(x, y, **fit_kw))
            return models
        cls = lgb.LGBMRegressor if kind == "regression" else lgb.LGBMClassifier
        return [cls(**base).fit(x, y, **fit_kw)]

    def _xgboost(
        self,
        kind: str,
        x,
        y,
        xv,
        yv,
        val_ic: tuple[DateGroups, np.ndarray] | None = None,
        groups: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> list[Any]:
        import xgboost as xgb

        base = (
            {
                "n_estimators": self.n_estimators,
                "learning_rate": self.learning_rate,
                "max_depth": 6,
                "min_child_weight": 50,
                "subsample": 0.8,
                "colsample_bytree": 0.8,
                "tree_method": "hist",
                "n_jobs": self.n_jobs,
                "random_state": self.seed,
                "early_stopping_rounds": self.early_stopping_rounds,
            }
            | ({"objective": self.objective, "eval_metric": "ndcg"} if kind == "rank" else {})
            | self.params
        )
        if val_ic is not None:
            # stop on the validation dates' rank IC, maximised (XGBoost minimises a custom metric by default);
            # a ranker's callable metric sees one query group at a time: it gets the raw returns as eval labels
            base["eval_metric"] = one_date_rank_ic if kind == "rank" else XGBRankIC(*val_ic)
            base["disable_default_eval_metric"] = True  # NDCG would refuse the raw returns as labels
            base["early_stopping_rounds"] = None
            stop = (
                floor_early_stopping("xgboost", self.early_stopping_rounds, self.min_trees)
                if self.min_trees
                else xgb.callback.EarlyStopping(
                    rounds=self.early_stopping_rounds, metric_name="rank_ic", maximize=True, save_best=False
                )
            )
            base["callbacks"] = [stop]
        if kind == "rank":
            assert groups is not None
            m = xgb.XGBRanker(**base)
            ev = [(xv, yv if val_ic is None else val_ic[1])]
            return [m.fit(x, y, group=groups[0], eval_set=ev, eval_group=[groups[1]], verbose=False)]
        if kind == "quantile":
            m = xgb.XGBRegressor(
                objective="reg:quantileerror", quantile_alpha=np.array(self.quantiles), **base
            )
        elif kind == "regression":
            m = xgb.XGBRegressor(**base)
        else:
            m = xgb.XGBClassifier(**base)
        return [m.fit(x, y, eval_set=[(xv, yv)], verbose=False)]

    def _catboost(
        self,
        kind: str,
        x,
        y,
        xv,
        yv,
        cat: list[int],
        val_ic: tuple[DateGroups, np.ndarray] | None = None,
        dates: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> list[Any]:
        """`dates`: each train and validation row's date, CatBoost's group_id for a ranking objective."""
        import catboost as cb

        base = (
            {
                "iterations": self.n_estimators,
                "learning_rate": self.learning_rate,
                "depth": 6,
                "thread_count": self.n_jobs,
                "random_seed": self.seed,
                "verbose": False,
                "allow_writing_files": False,
                "od_type": "Iter",
                "od_wait": self.early_stopping_rounds,
                "use_best_model": True,
            }
            | ({"loss_function": self.objective, "eval_metric": "NDCG"} if kind == "rank" else {})
            | self.params
        )
        if kind == "quantile":
            levels = ",".join(str(q) for q in self.quantiles or ())
            base["loss_function"] = f"MultiQuantile:alpha={levels}"
        elif kind == "multiclass":
            base["loss_function"] = "MultiClass"
        if val_ic is not None:  # use_best_model then keeps the iteration of the best validation rank IC
            base["eval_metric"] = CatBoostRankIC(*val_ic)
        if cat:  # CatBoost wants categorical columns as integers
            x, xv = self._cat_frame(x, cat), self._cat_frame(xv, cat)
        gid, vgid = dates if dates is not None else (None, None)
        pool = cb.Pool(x, y, cat_features=cat or None, group_id=gid)
        vpool = cb.Pool(xv, yv, cat_features=cat or None, group_id=vgid)
        if kind == "rank":
            cls: Any = cb.CatBoostRanker
        else:
            cls = cb.CatBoostClassifier if kind in ("binary", "multiclass") else cb.CatBoostRegressor
        if not (self.min_trees and val_ic is not None):
            return [cls(**base).fit(pool, eval_set=vpool)]
        # the floor: train without CatBoost's own stopping, then keep the trees up to the floor's best
        floor = floor_early_stopping("catboost", self.early_stopping_rounds, self.min_trees, "CatBoostRankIC")
        base = {k: v for k, v in base.items() if k not in ("od_type", "od_wait")} | {"use_best_model": False}
        model = cls(**base).fit(pool, eval_set=vpool, callbacks=[floor])
        if floor.best_iteration >= 0:  # else every tree predicts (fewer trained than min_trees)
            model.shrink(ntree_end=floor.best_iteration + 1)
        return [model]

    @staticmethod
    def _cat_frame(x: np.ndarray, cat: list[int]) -> Any:
        import pandas as pd

        frame = pd.DataFrame(x)
        for c in cat:
            frame[c] = frame[c].astype(np.int64)
        return frame

    # -- the FoldModel surface ------------------------------------------------------------------------
    def fit(self, data: PanelData, fold: Fold) -> None:
        task = data.task.name
        check_task(self.name, task, TASKS)
        kind = self._kind(task)
        labels = data.fold_labels(fold)  # the training target (task.target), fitted on this fold's rows
        ok = np.isfinite(labels)
        idx = data.split_index(fold, "train")
        idx = subsample(idx[ok[idx[:, 0], idx[:, 1]]], self.max_train_rows, self.seed + fold.index)
        vidx = data.split_index(fold, "val")
        vidx = vidx[ok[vidx[:, 0], vidx[:, 1]]]
        # date-major rows: the ranking libraries want each query group (date) contiguous
        idx, vidx = idx[date_order(idx)], vidx[date_order(vidx)]
        if len(idx) == 0 or len(vidx) == 0:
            raise ValueError(f"{self.name}: fold {fold.index} has {len(idx)} train and {len(vidx)} val rows")
        x, xv = self.design(data, idx), self.design(data, vidx)
        y, yv = targets(data, idx, labels), targets(data, vidx, labels)
        if kind in ("binary", "multiclass"):
            y, yv = y.astype(int), yv.astype(int)
        cat = [x.shape[1] - 1] if self.use_sector else []
        val_ic = None
        if self.early_stopping_metric == "rank_ic" and kind in ("regression", "rank"):
            # judged as evaluation judges it: the realised raw return's ranking within each validation date
            val_ic = (DateGroups.of(vidx[:, 0]), data.y_ret[vidx[:, 0], vidx[:, 1]])
        dates = groups = None
        if kind == "rank":  # each date's stocks are one query group, graded 0..rank_levels-1 by the target
            dates = (idx[:, 0], vidx[:, 0])
            groups = (group_sizes(dates[0]), group_sizes(dates[1]))
            y, yv = relevance(y, dates[0], self.rank_levels), relevance(yv, dates[1], self.rank_levels)
        if self.library == "lightgbm":
            self.models = self._lightgbm(kind, x, y, xv, yv, cat, val_ic, groups)
        elif self.library == "xgboost":
            self.models = self._xgboost(kind, x, y, xv, yv, val_ic, groups)
        else:
            self.models = self._catboost(kind, x, y, xv, yv, cat, val_ic, dates)
        m = self.models[0]
        best = getattr(m, "best_iteration_", None) or getattr(m, "best_iteration", None)
        if callable(getattr(m, "get_best_iteration", None)):
            # CatBoost: a floored model was shrunk to the floor's best, which CatBoost's own record does not know
            best = m.tree_count_ - 1 if self.min_trees else m.get_best_iteration()
        self.best_iteration[fold.index] = int(best) if best is not None else -1

    def predict(self, data: PanelData, index: np.ndarray) -> Predictions:
        if not self.models:
            raise RuntimeError(f"{self.name}: fit before predict")
        task = data.task.name
        kind = self._kind(task)
        x = self.design(data, index)
        if self.library == "catboost" and self.use_sector:
            x = self._cat_frame(x, [x.shape[1] - 1])
        if len(index) == 0:
            empty = np.zeros(0)
            return Predictions(empty, empty, empty, None)
        if kind == "quantile":
            assert self.quantiles is not None
            if self.library == "lightgbm":
                q = np.stack([m.predict(x) for m in self.models], axis=1)
            else:
                q = np.asarray(self.models[0].predict(x)).reshape(len(index), -1)
            q = non_crossing(q)
            levels = np.array(self.quantiles)
            mid = int(np.argmin(np.abs(levels - 0.5)))
            extra = dict(zip(quantile_names(self.quantiles), q.T, strict=True))
            return from_point(task, q[:, mid], extra)
        m = self.models[0]
        if kind in (
            "regression",
            "rank",
        ):  # a ranker's output is a plain score: only its order per date counts
            return from_point(task, np.asarray(m.predict(x)).reshape(-1))
        probs = np.asarray(m.predict_proba(x))
        return from_probs(task, probs[:, 1] if kind == "binary" else probs)
