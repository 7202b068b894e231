"""evaluate_run on real OOF rows, and the HTML report rendered in headless Chromium with its plots showing."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pytest

from deepq.evaluation.evaluate import EvalOptions, evaluate_run
from deepq.evaluation.portfolio import PortfolioSpec
from deepq.evaluation.report import write_report

CHROMIUM = next(
    (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
)


@pytest.fixture(scope="module")
def evaluated(sample_run, tmp_path_factory):
    data, folds, oof = sample_run
    opt = replace(
        EvalOptions(n_boot=100),
        portfolios=(
            PortfolioSpec("ls_q20_5d", quantile=0.2, holding_days=5, rank_buffer=0.1),
            PortfolioSpec("top5", "top_k", top_k=5, holding_days=5),
        ),
        primary="ls_q20_5d",
    )
    result = evaluate_run(oof, data, opt)
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(path, "deepq sample", result, folds, data.panel.dates, "verdict text", "a: 1\n")
    return result, path


def test_evaluation_tables(evaluated):
    result, _ = evaluated
    s = result.summary.set_index("model")
    # always-up on the same rows equals always_up's own accuracy
    assert s.loc["momentum_20", "always_up_acc"] == pytest.approx(s.loc["always_up", "dir_acc"])
    assert (
        s.loc["momentum_20", "dir_acc_lo"]
        < s.loc["momentum_20", "dir_acc"]
        < s.loc["momentum_20", "dir_acc_hi"]
    )
    assert s.loc["momentum_20", "dir_acc_se_clustered"] > s.loc["momentum_20", "dir_acc_se_iid"]
    assert (
        0.9 < s.loc["momentum_20", "price_r2_rw"] <= 1.0
    )  # a random walk's price R² is high and meaningless
    assert set(result.portfolios["model"]) == {"momentum_20", "last_return"}  # always_up has no ranking
    assert set(result.ic_decay["horizon_days"]) == {1, 2, 5, 10, 21}
    assert {"bull", "bear", "high vol", "low vol"} <= set(result.regimes["label"])
    assert "Volmageddon 2018-02-05" in set(result.stress["window"])
    assert len(set(result.targets["target"])) == 8
    assert set(result.daily.loc[result.daily["portfolio"] == "benchmark", "model"]) == {"SPY"}


def test_report_is_self_contained(evaluated):
    _, path = evaluated
    html = path.read_text()
    for section in (
        "targets",
        "summary",
        "portfolios",
        "equity",
        "ic",
        "calibration",
        "regimes",
        "stress",
        "plan",
    ):
        assert f'id="{section}"' in html, section
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) >= 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in html and "https://" not in html


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_report_renders_plots_in_headless_chromium(evaluated, tmp_path):
    _, path = evaluated
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run([*flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert len(re.findall(r'<img alt="plot" class="plot" src="data:image/png;base64,', dom.stdout)) >= 4
    shot = tmp_path / "shot.png"
    size = [
        "--window-size=1300,5000",
        "--hide-scrollbars",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=10000",
    ]
    run = subprocess.run([*flags, *size, f"--screenshot={shot}", path.as_uri()],
                         capture_output=True, text=True, timeout=180)  # fmt: skip
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    img = (plt.imread(shot)[..., :3] * 255).round()
    # matplotlib's first two line colours (#1f77b4, #ff7f0e) drawn by the plots, and a page that is not blank
    blue = np.all(np.abs(img - np.array([31, 119, 180])) < 12, axis=-1).sum()
    orange = np.all(np.abs(img - np.array([255, 127, 14])) < 12, axis=-1).sum()
    assert blue > 1000 and orange > 1000, (blue, orange)
    assert (img.sum(axis=-1) < 600).mean() > 0.02
