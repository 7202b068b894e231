"""`deepq monitor`: drift, performance decay and feature importance of a registered version; retrain on alert.

    deepq monitor                                   # the served default version, latest 63 sessions
    deepq monitor model=lstm_returns:2 window_days=126 retrain=true

Reference = the usable cells of the version's training window (model.json `train`); current = the latest
`window_days` sessions. Inputs are built as the server builds them (deepq.serve.inputs). Writes
monitor_report.json, monitor_report.md and appends importance_history.csv under `out`; with retrain=true an
alert trains on the latest window (a one-fold walk-forward whose test block is the monitored window) and
registers the result as a new candidate.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console

from deepq.dataset.labels import forward_return
from deepq.export.registry import ModelVersion, Registry
from deepq.monitor.drift import feature_drift, psi
from deepq.monitor.importance import permutation_importance
from deepq.monitor.performance import daily_performance, rolling_performance
from deepq.monitor.policy import Assessment, Thresholds, assess, check_and_retrain
from deepq.serve.inputs import InputBuilder, load_panel_features, postprocess
from deepq.tasks.hydra_utils import CONFIG_DIR
from deepq.utils.io import write_json_atomic

console = Console()


def _run(module: torch.jit.ScriptModule, inputs: tuple[torch.Tensor, ...], batch: int = 4096) -> np.ndarray:
    """Every model input (x first, then static ids / calendar for multi-input networks) -> outputs."""
    n = len(inputs[0])
    with torch.inference_mode():
        outs = [module(*(t[i : i + batch] for t in inputs)).numpy() for i in range(0, n, batch)]
    return np.concatenate(outs) if outs else np.zeros((0, 1), np.float32)


def _cells(ok: np.ndarray, start: int, stop: int, max_n: int | None, seed: int = 0) -> np.ndarray:
    t, s = np.nonzero(ok[start:stop])
    cells = np.stack([t + start, s], axis=1)
    if max_n and len(cells) > max_n:
        cells = cells[np.sort(np.random.default_rng(seed).choice(len(cells), max_n, replace=False))]
    return cells


def monitor(cfg: DictConfig) -> dict[str, Any]:
    started = time.time()
    reg = Registry(cfg.registry)
    mv = reg.resolve(cfg.model)
    module, meta = reg.load(mv)
    config_yaml = (mv.path / "config.yaml").read_text()
    rank = (meta.get("normalizer") or {}).get("method") == "rank"
    # the data as it is now (reuse=False): in a long-lived process (deepq daily's tests, a notebook) the
    # per-process panel cache would hand the monitor the panel of an earlier call, without the new sessions
    source = load_panel_features(
        config_yaml, int(meta["lookback"]), rank, dict(cfg.data_overrides), reuse=False
    )
    builder = InputBuilder(source, meta)
    panel, names = source.panel, list(meta["features"])

    lo, hi = (panel.date_index(d.strip()) for d in str(meta["train"]).split(".."))
    end = panel.date_index(cfg.end) if cfg.end else len(panel.dates) - 1
    start = max(end - int(cfg.window_days) + 1, hi + 1)
    ref_cells = _cells(builder.servable, lo, hi + 1, int(cfg.reference_max_samples))
    cur_cells = _cells(builder.servable, start, end + 1, None)
    if not len(cur_cells) or not len(ref_cells):
        raise SystemExit(
            f"deepq monitor: no usable cells (reference {len(ref_cells)}, current {len(cur_cells)})"
        )
    feats = source.features.numpy()
    drift = feature_drift(
        feats[ref_cells[:, 0], ref_cells[:, 1]], feats[cur_cells[:, 0], cur_cells[:, 1]], names,
        cfg.thresholds.psi_alert, cfg.thresholds.ks_pvalue, cfg.thresholds.ks_stat,
    )  # fmt: skip
    ref_pred = _run(module, builder.model_inputs(ref_cells[:, 0], ref_cells[:, 1]))
    cur_inputs = builder.model_inputs(cur_cells[:, 0], cur_cells[:, 1])
    cur_out = postprocess(_run(module, cur_inputs), meta)
    prediction_psi = psi(ref_pred[:, 0], cur_out["pred"])

    y_ret = forward_return(panel, int(meta["horizon_days"]), str(meta.get("execution", "next_close")))  # type: ignore[arg-type]
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(panel.dates[cur_cells[:, 0]]),
            "symbol": np.asarray(panel.symbols)[cur_cells[:, 1]],
            "pred": cur_out["pred"],
            "score": cur_out["score"],
            "y_ret": y_ret[cur_cells[:, 0], cur_cells[:, 1]],
        }
    )
    th = Thresholds.from_mapping(OmegaConf.to_container(cfg.thresholds, resolve=True))  # type: ignore[arg-type]
    perf = rolling_performance(daily_performance(frame), th.ic_window_days)

    importance = pd.DataFrame()
    labelled = np.isfinite(frame["y_ret"].to_numpy())
    if int(cfg.importance_samples) > 0 and labelled.sum() >= 50:
        idx = np.flatnonzero(labelled)
        idx = np.random.default_rng(0).choice(idx, min(len(idx), int(cfg.importance_samples)), replace=False)
        sel = torch.from_numpy(idx)
        others = tuple(t[sel] for t in cur_inputs[1:])  # ids and calendar stay with their sample
        importance = permutation_importance(
            lambda x: _run(module, (x, *others)), cur_inputs[0][sel], frame["y_ret"].to_numpy()[idx], names,
            n_repeats=int(cfg.importance_repeats),
        )  # fmt: skip

    assessment = assess(drift, prediction_psi, perf, th)
    retrain_fn = (
        (lambda: retrain(cfg, mv, reg, str(panel.dates[start]), str(panel.dates[end])))
        if cfg.retrain
        else None
    )
    assessment = check_and_retrain(assessment, retrain_fn)
    report = {
        "model": mv.ref,
        "stage": mv.stage,
        "reference": {"from": str(panel.dates[lo]), "to": str(panel.dates[hi]), "cells": len(ref_cells)},
        "window": {"from": str(panel.dates[start]), "to": str(panel.dates[end]), "cells": len(cur_cells)},
        "prediction_psi": prediction_psi,
        "drifted_features": drift.loc[drift["drifted"], "feature"].tolist(),
        "performance": {k: _f(perf[k].dropna().iloc[-1]) if perf[k].notna().any() else None
                        for k in ("rolling_ic", "rolling_accuracy")} | {"labelled_days": int(perf["ic"].notna().sum())},
        "thresholds": OmegaConf.to_container(cfg.thresholds, resolve=True),
        "seconds": round(time.time() - started, 1),
        "out": str(cfg.out),
    } | assessment.to_dict()  # fmt: skip
    write_outputs(Path(cfg.out), report, drift, perf, importance)
    print_summary(report, drift, importance, assessment)
    return report


def _f(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def retrain(
    cfg: DictConfig, mv: ModelVersion, reg: Registry, window_start: str, window_end: str
) -> dict[str, Any]:
    """Train the version's own config on the latest window and register the result as a candidate."""
    from deepq.tasks.train import train  # the heavy training stack only when a retrain is due

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    new_out = str(Path(cfg.out) / f"retrain-{stamp}")
    text = (mv.path / "config.yaml").read_text()
    if mv.source:  # the resolved config points logs etc. at the original run's folder: point them at ours
        text = text.replace(mv.source, new_out)
    run_cfg = OmegaConf.create(text)
    with open_dict(run_cfg):
        test_years = round(float(cfg.window_days) / 252, 4)
        run_cfg.split.first_test, run_cfg.split.last_date = window_start, window_end
        run_cfg.split.test_years, run_cfg.split.step_years, run_cfg.split.max_folds = (
            test_years,
            test_years,
            1,
        )
        run_cfg.output_dir = new_out
        run_cfg.export = True
        run_cfg.registry = {"enabled": True, "root": str(reg.root)}
    run_cfg = OmegaConf.merge(run_cfg, OmegaConf.from_dotlist(list(cfg.retrain_overrides)))
    console.print(f"[yellow]retraining {mv.name} on the window {window_start} .. {window_end}[/]")
    train(run_cfg)  # type: ignore[arg-type]
    new = reg.versions(mv.name)[-1]
    return {"ref": new.ref, "stage": new.stage, "output_dir": run_cfg.output_dir}


def write_outputs(
    out: Path, report: dict, drift: pd.DataFrame, perf: pd.DataFrame, importance: pd.DataFrame
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(report | {"drift": drift.to_dict("records"), "importance": importance.to_dict("records")},
                      out / "monitor_report.json")  # fmt: skip
    perf.to_csv(out / "performance.csv", index=False)
    if len(importance):
        hist = importance.assign(ts=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), model=report["model"],
                                 window_to=report["window"]["to"])  # fmt: skip
        path = out / "importance_history.csv"
        hist.to_csv(path, mode="a", header=not path.exists(), index=False)
    lines = [f"# deepq monitor: {report['model']} ({report['stage']})", "",
             f"reference {report['reference']['from']} .. {report['reference']['to']}; "
             f"window {report['window']['from']} .. {report['window']['to']}", "",
             f"prediction PSI: {report['prediction_psi']:.4f}", f"performance: {report['performance']}", "",
             "## alerts", *([f"- **{a['kind']}**: {a['message']}" for a in report["alerts"]] or ["none"]), "",
             "## feature drift", drift.to_markdown(index=False, floatfmt=".4g") if _has_tabulate() else drift.to_string()]  # fmt: skip
    if report.get("retrained"):
        lines += ["", f"retrained: {report['retrained']}"]
    (out / "monitor_report.md").write_text("\n".join(lines) + "\n")


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def print_summary(report: dict, drift: pd.DataFrame, importance: pd.DataFrame, a: Assessment) -> None:
    console.print(f"[bold]deepq monitor[/] {report['model']}: window {report['window']['from']} .. {report['window']['to']} "
                  f"({report['window']['cells']} cells) vs training {report['reference']['from']} .. {report['reference']['to']}")  # fmt: skip
    console.print(f"drifted features: {len(report['drifted_features'])}/{len(drift)}  prediction PSI {report['prediction_psi']:.4f}  "
                  f"performance {report['performance']}")  # fmt: skip
    if len(importance):
        console.print("top features by permutation importance (IC drop): "
                      + ", ".join(f"{r.feature} {r.ic_drop:.4f}" for r in importance.head(5).itertuples()))  # fmt: skip
    for alert in a.alerts:
        console.print(f"[red]ALERT[/] {alert.kind}: {alert.message}")
    if not a.alerts:
        console.print("[green]no alerts[/]")
    if a.retrained:
        console.print(f"registered candidate {a.retrained['ref']}")
    console.print(f"report in {report.get('out', '')}")


def main() -> None:
    p = argparse.ArgumentParser(
        prog="deepq monitor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default=str(Path(CONFIG_DIR) / "monitor" / "default.yaml"))
    p.add_argument("overrides", nargs="*", help="key=value overrides of the monitor config")
    args = p.parse_args()
    cfg = OmegaConf.merge(OmegaConf.load(args.config), OmegaConf.from_dotlist(args.overrides))
    assert isinstance(cfg, DictConfig)
    report = monitor(cfg)
    if report["alerts"] and not cfg.retrain:
        raise SystemExit(1)  # alerts fail the command, so a scheduler notices


if __name__ == "__main__":
    main()
