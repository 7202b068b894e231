"""Backup -> restore into an empty directory reproduces the same predictions; corruption is refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from deepq.export.registry import Registry
from deepq.serve.service import PredictionService, ServeSettings
from deepq.tasks.backup import backup, restore
from tests.conftest import SAMPLE

FILES = ("prices.parquet", "sectors.parquet", "nyse_sessions.parquet")


def _predict(registry: str, prices_dir) -> list[float]:
    overrides = {
        k: str(prices_dir / f) for k, f in zip(("prices", "sectors", "sessions"), FILES, strict=True)
    }
    service = PredictionService(ServeSettings(registry=registry, data_overrides=overrides))
    body, _ = service.predict(lambda b: b.for_symbols(["AAPL", "JPM", "XOM", "NFLX"], "2019-06-03"))
    return [p["pred"] for p in body["predictions"]]


def test_backup_restore_into_empty_dir_reproduces_predictions(fdr_run, tmp_path):
    live = tmp_path / "live"
    Registry(live / "registry").register_run(fdr_run)
    (live / "prices").mkdir()
    for f in FILES:
        shutil.copy2(SAMPLE / f, live / "prices" / f)
    (live / "prices" / "locks").mkdir()
    (live / "prices" / "locks" / "AAPL.lock").write_text("")  # locks are not backed up
    before = _predict(str(live / "registry"), live / "prices")

    snap = backup(
        tmp_path / "backups",
        {"registry": live / "registry", "prices": live / "prices", "features": live / "nope"},
    )
    shutil.rmtree(live)  # disaster
    targets = restore(tmp_path / "backups", into=tmp_path / "restored")
    assert (
        targets["registry"] == tmp_path / "restored" / "registry"
        and not (targets["prices"] / "locks").exists()
    )
    Registry(targets["registry"]).verify(Registry(targets["registry"]).resolve())
    after = _predict(str(targets["registry"]), targets["prices"])
    assert np.all(np.isfinite(before)) and after == before

    with pytest.raises(FileExistsError, match="not empty"):
        restore(snap, into=tmp_path / "restored")
    victim = next((snap / "registry" / "models").rglob("model.pt"))
    victim.write_bytes(victim.read_bytes()[:-1] + b"x")
    with pytest.raises(ValueError, match="model.pt does not match"):
        restore(snap, into=tmp_path / "again")
    assert not (tmp_path / "again").exists()  # nothing written from a corrupt snapshot
