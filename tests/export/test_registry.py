"""The model registry: versions and stages, checksums verified on load, relocatable, fed by `deepq train`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from deepq.export.registry import Registry, RegistryError, parse_ref
from deepq.export.torchscript import export_torchscript
from deepq.models.heads import PointHead
from deepq.models.lstm import LSTMNet
from deepq.training.module import ForecastModule
from tests.serve.fdr import train_registry


@pytest.fixture
def artifact(tmp_path):
    torch.manual_seed(0)
    net = LSTMNet(3, 1, hidden_size=4)
    model = ForecastModule(net, PointHead(), torch.optim.Adam).model
    path = export_torchscript(
        model,
        torch.randn(2, 5, 3),
        tmp_path / "art" / "model.pt",
        {"features": ["a", "b", "c"], "lookback": 5},
    )
    return {"model.pt": path, "model.json": path.with_suffix(".json")}


def test_versions_stages_and_default_resolution(tmp_path, artifact):
    reg = Registry(tmp_path / "reg")
    v1 = reg.register("m", artifact, {"metrics": {"val_loss": 0.5}})
    v2 = reg.register("m", artifact, {"metrics": {"val_loss": 0.4}})
    assert (v1.version, v2.version) == (1, 2) and v1.stage == "candidate"
    assert set(v1.artifacts) == {"model.pt", "model.json"} and all(
        len(s) == 64 for s in v1.artifacts.values()
    )
    assert reg.resolve().ref == "m:2"  # no production yet: the latest candidate
    reg.set_stage("m", 1, "production")
    assert reg.resolve().ref == "m:1" and reg.resolve("m:production").ref == "m:1"
    reg.set_stage("m", 2, "production")  # the previous production version is archived
    assert reg.get("m", 1).stage == "archived" and reg.resolve().ref == "m:2"
    assert [e["action"] for e in reg.history("m")] == ["register", "register", "stage", "stage", "stage"]
    with pytest.raises(RegistryError, match="stage"):
        reg.set_stage("m", 1, "live")
    with pytest.raises(RegistryError, match="m:9"):
        reg.get("m", 9)
    assert parse_ref("m:3") == ("m", 3) and parse_ref("production") == (None, "production")


@pytest.mark.parametrize("victim", ["model.pt", "model.json"])
def test_tampered_artifact_is_refused(tmp_path, artifact, victim):
    reg = Registry(tmp_path / "reg")
    mv = reg.register("m", artifact, {})
    module, meta = reg.load(mv)  # untouched: loads
    assert meta["lookback"] == 5
    with open(mv.path / victim, "ab") as f:
        f.write(b" ")
    with pytest.raises(RegistryError, match=f"sha256 of .*{victim}"):
        reg.load(mv)
    (mv.path / victim).unlink()
    with pytest.raises(RegistryError, match="missing"):
        reg.verify(mv)


def test_registry_is_relocatable(tmp_path, artifact):
    reg = Registry(tmp_path / "reg")
    reg.register("m", artifact, {})
    shutil.copytree(tmp_path / "reg", tmp_path / "moved")
    shutil.rmtree(tmp_path / "reg")
    moved = Registry(tmp_path / "moved")
    module, _ = moved.load(moved.resolve("m"))
    assert module(torch.randn(1, 5, 3)).shape == (1, 1)


def test_train_registers_a_candidate_with_its_lineage(tmp_path_factory):
    reg = Registry(train_registry(tmp_path_factory))
    (mv,) = reg.versions()
    assert mv.ref == "lstm_returns:1" and mv.stage == "candidate"
    meta = mv.meta
    assert set(mv.artifacts) == {"model.pt", "model.json", "config.yaml", "metrics.json"}
    assert len(meta["features"]) == len(meta["normalizer"]["center"]) == 32
    assert meta["lookback"] == 20 and meta["data_fingerprint"] and "datamodule" in meta["config"]
    assert "val_loss" in meta["metrics"]
    assert json.loads((mv.path / "model.json").read_text())["sha256"] == mv.artifacts["model.pt"]


@pytest.mark.slow
def test_mirror_to_mlflow_registers_the_version(tmp_path, artifact):
    pytest.importorskip("mlflow")
    from deepq.export.registry import mirror_to_mlflow

    reg = Registry(tmp_path / "reg")
    mv = reg.register("m", artifact, {"metrics": {"val_loss": 0.5}})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert mirror_to_mlflow(mv, uri) == "1"
    import mlflow

    client = mlflow.MlflowClient(uri)
    (version,) = client.search_model_versions("name='m'")
    run = client.get_run(version.run_id)
    assert run.data.tags["deepq.ref"] == "m:1" and run.data.metrics["val_loss"] == 0.5
