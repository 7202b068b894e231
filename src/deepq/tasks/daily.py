"""`deepq daily`: the one command a scheduler runs after the market closes.

    deepq daily                                              # the default model, its own cache, no server
    deepq daily server.url=http://127.0.0.1:8000             # ... and reload the server (key: $DEEPQ_API_KEY)
    deepq daily model=lstm_returns:3 monitor.retrain=true update.overrides=[sources=local]

Steps, in order: `update` (new sessions of every cached symbol, deepq.data.sync) -> `quality` (the gate over
the newest sessions; a failure stops the run) -> `predict` (every session after the last one scored, merged
into <out>/predictions.parquet) -> `monitor` (drift and decay; retrain -> candidate when the policy says so)
-> `reload` (POST /v1/admin/reload, when server.url is set). Options: conf/daily/default.yaml.

State: <out>/state.json (default out: <registry>/daily/<model name>), written atomically after every step and
keyed by the model and the data's last session. A step done for that key is skipped, so a second run on the
same day changes nothing, and a run stopped half-way redoes only what it had not finished. A step may have
written before it was stopped: every output de-duplicates (predictions by model, date and symbol).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from deepq.export.registry import Registry
from deepq.tasks import daily_steps as steps
from deepq.tasks.daily_steps import Context, StepFailed, cache_last_session, scored_through
from deepq.tasks.hydra_utils import CONFIG_DIR
from deepq.utils.io import write_json_atomic

console = Console()
STEPS = ("update", "quality", "predict", "monitor", "reload")


@dataclass(frozen=True)
class StepResult:
    step: str
    status: str  # done | skipped | failed | not run
    detail: str
    seconds: float = 0.0  # wall time of the step


def load_daily_config(overrides: Sequence[str] = (), path: str | Path | None = None) -> DictConfig:
    base = OmegaConf.load(path or Path(CONFIG_DIR) / "daily" / "default.yaml")
    cfg = OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides)))
    assert isinstance(cfg, DictConfig)
    return cfg


def load_state(path: Path) -> dict[str, Any]:
    import json

    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as e:  # written atomically, so this is damage from outside: say where
        raise SystemExit(
            f"deepq daily: state file {path} is not JSON ({e}); move it away to start afresh"
        ) from None
    return state if isinstance(state, dict) else {}


def _cache_root(cfg: DictConfig, run_cfg: DictConfig) -> Path | None:
    """The cache the model reads (data_overrides.root, else its run's data.root); None for a file panel."""
    root = dict(cfg.data_overrides).get("root") or run_cfg.data.get("root")
    return Path(str(root)) if root else None


def daily(cfg: DictConfig, echo: Callable[[StepResult], None] | None = None) -> list[StepResult]:
    """Run the steps not yet done for today's data; one StepResult per step (all five, in order)."""
    reg = Registry(cfg.registry)
    version = reg.resolve(cfg.model)
    out = Path(cfg.out) if cfg.out else Path(reg.root) / "daily" / version.name
    state_path = out / "state.json"
    state = load_state(state_path)
    run_cfg = OmegaConf.create((version.path / "config.yaml").read_text())
    assert isinstance(run_cfg, DictConfig)
    ctx = Context(cfg, version, out, _cache_root(cfg, run_cfg))
    results: list[StepResult] = []

    clock = [time.perf_counter()]

    def note(step: str, status: str, detail: str) -> None:
        now = time.perf_counter()
        results.append(StepResult(step, status, detail, round(now - clock[0], 2)))
        clock[0] = now
        if echo:
            echo(results[-1])

    # 1. update: always tried (it is how new sessions are found); it appends only what the cache lacks
    before = cache_last_session(ctx.cache_root) if ctx.cache_root else None
    update_detail = ""
    if ctx.cache_root is None:
        note("update", "skipped", "the model reads no cache (its data is a file): nothing to update")
    elif not cfg["update"].enabled:
        note("update", "skipped", "update.enabled=false")
    else:
        try:
            update_detail = steps.step_update(ctx)
        except StepFailed as e:
            note("update", "failed", str(e))
            return _not_run(results, echo)
    if ctx.cache_root is not None:
        ctx.last_session = cache_last_session(ctx.cache_root)
    else:
        ctx.last_session = str(ctx.open_scorer().source.panel.dates[-1])

    same = state.get("model") == version.ref and state.get("data_last_session") == ctx.last_session
    if not same:  # new data (or another model): every step is due again
        state = {
            "model": version.ref,
            "data_last_session": ctx.last_session,
            "previous_session": state.get("data_last_session") or before,
            "predicted_through": state.get("predicted_through")
            if state.get("model") == version.ref
            else None,
            "steps": {},
        }
    ctx.previous_session = state["previous_session"]
    done: dict[str, Any] = state["steps"]

    def record(step: str, detail: str, **extra: Any) -> None:
        done[step] = {
            "status": "done",
            "detail": detail,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        done[step].update(extra)
        write_json_atomic(state, state_path)
        note(step, "done", detail)

    if ctx.cache_root is not None and cfg["update"].enabled:
        if "update" in done:
            note("update", "done", f"{update_detail}; no new session (data through {ctx.last_session})")
        else:
            record("update", f"{update_detail}; data through {ctx.last_session}")

    for step in STEPS[1:]:
        if done.get(step, {}).get("status") == "done":
            note(step, "skipped", f"already done for the data through {ctx.last_session}")
            continue
        why_skip = _skip_reason(step, ctx)
        if why_skip:
            note(step, "skipped", why_skip)
            continue
        try:
            if step == "quality":
                record(step, steps.step_quality(ctx))
            elif step == "predict":
                after = (
                    state.get("predicted_through")
                    or scored_through(ctx.predictions, version.ref)
                    or ctx.previous_session
                )
                detail, through = steps.step_predict(ctx, after)
                state["predicted_through"] = through
                record(step, detail)
            elif step == "monitor":
                detail, extra = steps.step_monitor(ctx)
                record(step, detail, **extra)
            else:
                record(step, steps.step_reload(ctx))
        except StepFailed as e:
            done[step] = {"status": "failed", "why": str(e)}
            write_json_atomic(state, state_path)
            note(step, "failed", str(e))
            return _not_run(results, echo)
    return results


def _skip_reason(step: str, ctx: Context) -> str | None:
    if step == "quality" and ctx.cache_root is None:
        return "the model reads no cache: the gate checks the cache"
    if step == "monitor" and not ctx.cfg.monitor.enabled:
        return "monitor.enabled=false"
    if step == "reload" and not ctx.cfg.server.url:
        return "no server configured (server.url)"
    return None


def _not_run(results: list[StepResult], echo: Callable[[StepResult], None] | None) -> list[StepResult]:
    seen = {r.step for r in results}
    for step in STEPS:
        if step not in seen:
            results.append(StepResult(step, "not run", "an earlier step failed"))
            if echo:
                echo(results[-1])
    return results


def print_result(r: StepResult) -> None:
    colour = {"done": "green", "skipped": "cyan", "failed": "red"}.get(r.status, "yellow")
    took = f" ({r.seconds:.1f} s)" if r.status in ("done", "failed") else ""
    console.print(f"[bold]{r.step:<8}[/] [{colour}]{r.status}[/]{took}: {r.detail}")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="deepq daily", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", help="a daily config file (default conf/daily/default.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the daily config")
    args = p.parse_args(argv)
    results = daily(load_daily_config(args.overrides, args.config), print_result)
    if any(r.status == "failed" for r in results):
        raise SystemExit(1)  # a scheduler sees the failure; the next run retries from the failed step


if __name__ == "__main__":
    main()
