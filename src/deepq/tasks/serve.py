"""`deepq serve`: the REST API (uvicorn) and the gRPC service over the registry's routed versions.

DEEPQ_API_KEY=... deepq serve                       # latest production (else candidate) version
deepq serve --route lstm_returns:1=0.9 --route lstm_returns:2=0.1 --shadow lstm_returns:3
deepq serve port=9000 grpc_port=null                # any key of conf/serve/default.yaml
"""

from __future__ import annotations

import argparse
import gc
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from deepq.features.freshness import StaleInputError
from deepq.serve.service import PredictionService, ServeSettings
from deepq.tasks.hydra_utils import CONFIG_DIR

console = Console(stderr=True)


def load_serve_config(
    path: str | Path, overrides: list[str], routes: list[str], shadow: str | None
) -> DictConfig:
    cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides))
    if routes:
        weights: dict[str, float] = {}
        for r in routes:
            ref, _, w = r.rpartition("=")
            if not ref:
                raise SystemExit(f"--route {r!r}: expected REF=WEIGHT, e.g. lstm_returns:2=0.5")
            weights[ref] = float(w)
        cfg.routes = weights
    if shadow:
        cfg.shadow = shadow
    assert isinstance(cfg, DictConfig)
    return cfg


def settings_from(cfg: DictConfig) -> tuple[ServeSettings, str | None]:
    c: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    api_key = os.environ.get(c["api_key_env"]) if c["require_api_key"] else None
    if c["require_api_key"] and not api_key:
        raise SystemExit(
            f"deepq serve: set the API key in ${c['api_key_env']} (or require_api_key=false for local use)"
        )
    keys = ServeSettings.__dataclass_fields__
    return ServeSettings(**{k: v for k, v in c.items() if k in keys}), api_key


def main() -> None:
    p = argparse.ArgumentParser(
        prog="deepq serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default=str(Path(CONFIG_DIR) / "serve" / "default.yaml"))
    p.add_argument("--route", action="append", default=[], help="REF=WEIGHT, repeatable (A/B arms)")
    p.add_argument("--shadow", default=None, help="a registry reference predicted in shadow mode")
    p.add_argument(
        "--allow-stale-inputs",
        action="store_true",
        help="serve although a reference series (SPY, a sector ETF, a source) is stale past the fill limit",
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides of the serve config")
    args = p.parse_args()
    overrides = [*args.overrides, *(["allow_stale_inputs=true"] if args.allow_stale_inputs else [])]
    cfg = load_serve_config(args.config, overrides, args.route, args.shadow)
    settings, api_key = settings_from(cfg)
    try:
        service = PredictionService(settings, api_key)
    except StaleInputError as e:
        raise SystemExit(f"deepq serve: {e}") from None
    for m in service.describe():
        console.print(f"serving {m['ref']} ({m['stage']}, {m['role']}, weight {m['weight']})")
    fresh = service.freshness()
    console.print(f"data as of {fresh.data_as_of} ({fresh.stale_sessions} completed sessions since)")
    if settings.refresh_interval_s > 0:
        service.start_refresher(settings.refresh_interval_s)
        console.print(f"reloading when the data changes (checked every {settings.refresh_interval_s:g} s)")

    import uvicorn

    from deepq.serve.app import create_app
    from deepq.serve.grpc_server import start_grpc

    grpc_server = None
    if cfg.grpc_port is not None:
        grpc_server, port = start_grpc(service, f"{cfg.host}:{cfg.grpc_port}")
        console.print(f"gRPC on {cfg.host}:{port}")
    console.print(f"REST on http://{cfg.host}:{cfg.port}  (OpenAPI docs at /docs)")
    # The panel, models and libraries loaded above are millions of long-lived objects; a full collection
    # walks them all (tens of ms: the p99 latency). Freeze them out of the collector's generations.
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(
            create_app(service),
            host=cfg.host,
            port=int(cfg.port),
            log_level="warning",
            access_log=False,
            # auto: httptools / uvloop when installed (pip install uvicorn[standard]), else h11 / asyncio
            http=cfg.get("http", "auto"),
            loop=cfg.get("loop", "auto"),
            proxy_headers=bool(cfg.get("proxy_headers", False)),  # the API never reads the client address
            server_header=False,
        )
    finally:
        service.stop_refresher()
        if grpc_server is not None:
            grpc_server.stop(grace=2)


if __name__ == "__main__":
    main()
