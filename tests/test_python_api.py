"""The Python API: docs/python.md's code blocks run top to bottom (on the sample, debug=fdr), and
`import deepq` stays cheap (no torch until a name is used)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd

from tests.conftest import ROOT


def test_docs_python_walk_through_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "python.md").read_text(), flags=re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)  # the walk-through writes outputs/notebook relative to the working folder
    monkeypatch.setenv("DEEPQ_REGISTRY", str(tmp_path / "registry"))
    scope: dict = {}
    for block in blocks:
        exec(compile(block, "docs/python.md", "exec"), scope)
    run, today, after, feats = scope["run"], scope["today"], scope["after"], scope["feats"]
    # the API's objects are the CLI's files, not copies with their own logic
    assert (tmp_path / "outputs" / "notebook" / "metrics.json").is_file() and run.report.is_file()
    assert "lstm" in set(run.predictions["model"]) and run.predictions["model"].nunique() > 1  # + baselines
    assert list(today["symbol"]) == ["AAPL", "JPM", "XOM"] and today["pred"].notna().all()
    train_end = pd.Timestamp(run.metrics["folds"][-1]["train"].split("..")[-1].strip())  # the exported fold
    assert after["date"].min() > train_end and after["date"].max() == pd.Timestamp("2024-06-28")
    assert list(feats.columns) == ["hl_range", "rsi_14"]
    aapl = feats.xs("AAPL", level="symbol")["hl_range"]
    p = scope["panel"]
    s = p.symbol_index("AAPL")
    want = np.log(p["high"][:, s] / p["low"][:, s])
    np.testing.assert_allclose(aapl.to_numpy(), want[np.isfinite(p["close"][:, s])], rtol=1e-6)


def test_import_deepq_does_not_load_torch():
    code = "import sys, deepq; assert 'torch' not in sys.modules and 'hydra' not in sys.modules; print(deepq.__all__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "load_model" in out.stdout
