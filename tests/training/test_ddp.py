"""trainer=ddp on CPU: two gloo processes train one tiny model, each reading a disjoint slice of the windows.

slow: ~25 CPU-seconds (two interpreters importing Lightning); run with -m slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np, torch, lightning as L
    torch.set_num_threads(1)
    from deepq.dataset.datamodule import PanelDataModule
    from deepq.dataset.folds import Fold
    from deepq.models.lstm import LSTMNet
    from deepq.models.heads import PointHead
    from deepq.training.module import ForecastModule

    out = sys.argv[1]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8, 4)).astype(np.float32)
    y = rng.normal(size=(300, 8)) * 0.01
    ok = np.ones((300, 8), bool)
    dm = PanelDataModule(x, y, ok, ok, lookback=10, batch_size=32, eval_batch_size=64)
    dm.set_fold(Fold(0, (10, 200), (202, 240), (242, 300)))

    class Record(L.Callback):
        def on_train_start(self, trainer, module):
            ds = trainer.train_dataloader.dataset
            cells = sorted(zip(ds.t.tolist(), ds.s.tolist()))
            with open(f"{out}/rank{trainer.global_rank}.json", "w") as f:
                json.dump({"world": trainer.world_size, "cells": cells}, f)

    torch.manual_seed(0)
    module = ForecastModule(LSTMNet(4, 1, hidden_size=8), PointHead(), torch.optim.Adam)
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", use_distributed_sampler=False, max_epochs=1,
        limit_train_batches=3, limit_val_batches=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()], num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=dm)
    if trainer.global_rank == 0:
        with open(f"{out}/done.json", "w") as f:
            json.dump({"val_loss": float(trainer.callback_metrics["val_loss"])}, f)
    """
)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_two_gloo_processes_shard_the_windows(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(SCRIPT)
    env = {"PL_DISABLE_FORK": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=280,
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    c0, c1 = {tuple(c) for c in r0["cells"]}, {tuple(c) for c in r1["cells"]}
    assert c0 and c1 and not (c0 & c1), "each process must read its own windows"
    assert abs(len(c0) - len(c1)) <= 1
    assert json.loads((tmp_path / "done.json").read_text())["val_loss"] > 0
