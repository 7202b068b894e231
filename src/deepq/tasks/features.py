"""`deepq features list`: the feature registry as a table (name, family, lookback, description).

deepq features list                      every registered feature
deepq features list --family technical   one or more families
deepq features list --set extended       the features a conf/features/<set>.yaml selects
deepq features families                  the count per family
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from hydra.utils import instantiate
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from deepq.features.registry import FeatureSpec, registry
from deepq.tasks.hydra_utils import CONFIG_DIR


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepq features", description="inspect the feature registry")
    sub = p.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="print name, family, lookback and description of each feature")
    ls.add_argument("--family", action="append", default=[], help="only this family (repeatable)")
    ls.add_argument("--set", dest="feature_set", help="only the features conf/features/<SET>.yaml selects")
    ls.add_argument("--names", action="store_true", help="print names only, one a line")
    sub.add_parser("families", help="count of features per family")
    return p


def _from_set(name: str) -> list[FeatureSpec]:
    path = f"{CONFIG_DIR}/features/{name}.yaml"
    try:
        cfg = OmegaConf.load(path)
    except FileNotFoundError:
        raise SystemExit(f"deepq features: no feature set {name!r} ({path} not found)") from None
    return list(instantiate(cfg))


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    console = Console()
    reg = registry()
    if args.action == "families":
        table = Table(title=f"{len(reg)} features")
        table.add_column("family")
        table.add_column("features", justify="right")
        for fam, n in sorted(Counter(s.family for s in reg.values()).items()):
            table.add_row(fam, str(n))
        console.print(table)
        return
    specs = _from_set(args.feature_set) if args.feature_set else list(reg.values())
    if args.family:
        unknown = set(args.family) - {s.family for s in reg.values()}
        if unknown:
            raise SystemExit(f"deepq features: unknown family(ies) {sorted(unknown)}")
        specs = [s for s in specs if s.family in args.family]
    if args.names:
        for s in specs:
            print(s.name)
        return
    n_fam = len({s.family for s in specs})
    table = Table(title=f"{len(specs)} features in {n_fam} families")
    for col, justify in (
        ("name", "left"),
        ("family", "left"),
        ("lookback", "right"),
        ("description", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for s in specs:
        table.add_row(s.name, s.family, str(s.lookback), s.description)
    console.print(table)


if __name__ == "__main__":
    main()
