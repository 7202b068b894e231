"""`deepq models list|promote|archive|show|verify`: the model registry from the command line.

deepq models list [--name lstm_returns] [--stage production]
deepq models promote lstm_returns:3 [--stage production]   # production archives the previous one
deepq models archive lstm_returns:2
"""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from deepq.export.registry import STAGES, Registry, RegistryError, default_root, parse_ref
from deepq.tasks.hydra_utils import project_root

console = Console()


def _version(reg: Registry, ref: str):  # type: ignore[no-untyped-def]
    name, sel = parse_ref(ref)
    if name is None or not isinstance(sel, int):
        raise SystemExit(f"expected NAME:VERSION, e.g. lstm_returns:3, got {ref!r}")
    return reg.get(name, sel)


def main() -> None:
    p = argparse.ArgumentParser(
        prog="deepq models", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--registry", default=None, help="registry root (default $DEEPQ_REGISTRY or ./registry)")
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list")
    ls.add_argument("--name")
    ls.add_argument("--stage", choices=STAGES)
    ls.add_argument("--json", action="store_true")
    pr = sub.add_parser("promote")
    pr.add_argument("ref")
    pr.add_argument("--stage", default="production", choices=STAGES)
    ar = sub.add_parser("archive")
    ar.add_argument("ref")
    sh = sub.add_parser("show")
    sh.add_argument("ref")
    ve = sub.add_parser("verify")
    ve.add_argument("ref", nargs="?")
    args = p.parse_args()
    reg = Registry(args.registry or default_root(project_root()))
    try:
        if args.cmd == "list":
            versions = reg.versions(args.name, args.stage)
            if args.json:
                print(json.dumps([v.summary() for v in versions], indent=2))
                return
            table = Table(title=f"models in {reg.root}")
            for col in ("ref", "stage", "created", "task", "lookback", "features", "val_loss", "data"):
                table.add_column(col)
            for v in versions:
                s = v.summary()
                val = s["metrics"].get("val_loss")
                table.add_row(
                    v.ref,
                    v.stage,
                    s["created_at"],
                    str(s["task"]),
                    str(s["lookback"]),
                    str(s["n_features"]),
                    f"{val:.4g}" if val is not None else "-",
                    str(s["data_fingerprint"]),
                )
            console.print(table)
        elif args.cmd == "promote":
            v = reg.set_stage(*_split(reg, args.ref), args.stage)
            console.print(f"{v.ref} -> {v.stage}")
        elif args.cmd == "archive":
            v = reg.set_stage(*_split(reg, args.ref), "archived")
            console.print(f"{v.ref} -> {v.stage}")
        elif args.cmd == "show":
            v = _version(reg, args.ref)
            meta = {k: val for k, val in v.meta.items() if k not in ("config", "normalizer")}
            print(
                json.dumps(
                    v.summary() | {"artifacts": dict(v.artifacts), "meta": meta}, indent=2, default=str
                )
            )
        elif args.cmd == "verify":
            versions = [_version(reg, args.ref)] if args.ref else reg.versions()
            for v in versions:
                reg.verify(v)
                console.print(f"{v.ref}: {len(v.artifacts)} artifacts ok")
    except RegistryError as e:
        raise SystemExit(f"deepq models: {e}") from None


def _split(reg: Registry, ref: str) -> tuple[str, int]:
    v = _version(reg, ref)
    return v.name, v.version


if __name__ == "__main__":
    main()
