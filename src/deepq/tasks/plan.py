"""`deepq plan`: the walk-forward fold plan of the composed config, as a table and a picture (no training).

Takes the same Hydra overrides as `deepq train` (`deepq plan data=shared split=expanding`), so the plan
shown is exactly the one a run with those overrides would use: same dates, purge, embargo and validation.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import matplotlib.pyplot as plt
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from deepq.dataset.folds import Fold
from deepq.evaluation.report import fold_plan_figure
from deepq.tasks.common import purge_days
from deepq.tasks.hydra_utils import CONFIG_DIR
from deepq.utils.io import write_atomic

console = Console()


def plan(cfg: DictConfig) -> tuple[list[Fold], Path]:
    panel = instantiate(cfg.data)
    purge = purge_days(cfg)
    folds: list[Fold] = instantiate(cfg.split)(
        dates=panel.dates, purge_days=purge, min_history_days=cfg.universe.min_history_days
    )
    table = Table(
        title=f"walk-forward plan: {cfg.split.mode}, purge {purge}, embargo {cfg.split.embargo_days} sessions, "
        f"execution {cfg.task.get('execution', 'next_close')}"
    )
    for col in ("fold", "train", "val", "test", "train_days", "test_days"):
        table.add_column(col, justify="right" if col.endswith("days") or col == "fold" else "left")
    for f in folds:
        d = f.describe(panel.dates)
        table.add_row(*[str(d[c]) for c in ("fold", "train", "val", "test", "train_days", "test_days")])
    console.print(table)
    test_days = int(np.sum([f.test[1] - f.test[0] for f in folds]))
    console.print(
        f"{len(folds)} folds, {test_days} test sessions ({test_days / 252:.1f} years out of sample)"
    )
    out = Path(cfg.get("output_dir") or HydraConfig.get().runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig = fold_plan_figure(folds, panel.dates)
    path = write_atomic(
        out / "fold_plan.png", lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    )
    plt.close(fig)
    console.print(f"picture: {path}")
    return folds, path


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    plan(cfg)


if __name__ == "__main__":
    main()
