"""`make reliability`, small: the sources and cache sections (real loopback HTTP, real SIGKILLs) and the table."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def script(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_source_survives_every_fault_over_loopback_http(tmp_path):
    rel = script("rel_sources")
    rows = {r["case"]: r for r in rel.run("small", tmp_path)}
    bad = {c: r for c, r in rows.items() if not r["ok"] or r["lost"] != 0 or r["errors"] != 0}
    assert not bad
    for vendor in rel.VENDORS:
        assert rows[f"{vendor} no fault"]["got"] == rows[f"{vendor} no fault"]["expected"] == 108
        for fault in ("503", "timeout", "malformed", "empty"):
            row = rows[f"{vendor} {fault}"]
            assert row["requests"] > rows[f"{vendor} no fault"]["requests"]  # the faults were served
            assert row["retries"] >= 1, row  # ... and retried through, not around
    for vendor in ("tiingo", "alphavantage", "polygon"):  # Retry-After: 1 honoured up to max_delay_s
        assert rows[f"{vendor} 429"]["waited_ms"] >= 2 * 50.0
    downs = [r for c, r in rows.items() if " down, chain " in c]
    assert len(downs) == 2 and all(r["fallbacks"] == 1 and r["got"] == r["expected"] == 108 for r in downs)


def test_the_loopback_server_serves_each_fault():
    rel = script("rel_sources")
    import requests

    with rel.serving() as server:
        url = f"{server.url}/tiingo/aapl/prices"
        assert len(requests.get(url, timeout=5).json()) == 108
        for fault in ("429", "503", "malformed", "blank", "empty", "drop"):
            server.inject("tiingo", "AAPL", fault, times=1)
        r = requests.get(url, timeout=5)
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        assert requests.get(url, timeout=5).status_code == 503
        with pytest.raises(ValueError):
            requests.get(url, timeout=5).json()
        assert requests.get(url, timeout=5).content == b""
        assert requests.get(url, timeout=5).json() == []
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=5)
        server.inject("tiingo", "AAPL", "timeout", times=1)
        with pytest.raises(requests.Timeout):
            requests.get(url, timeout=rel.HANG_S / 5)


def test_cache_survives_kill_9_and_two_writers(tmp_path):
    rows = script("rel_cache").run("small", tmp_path)
    kill, both = rows
    assert kill["ok"] and kill["kills"] == 10 and kill["expected"] > 0  # writes were acknowledged
    assert kill["lost"] == kill["unreadable"] == kill["torn"] == kill["mismatches"] == 0
    assert both["ok"] and both["lost"] == both["torn"] == both["mismatches"] == 0
    assert both["got"] == both["expected"] > 0


def test_the_table_runs_each_section_and_says_what_is_missing(tmp_path, monkeypatch, capsys):
    bench = script("bench_reliability")
    seen = []

    def run(scale: str, workdir: Path) -> list[dict]:
        seen.append((scale, workdir.is_dir()))
        return [
            {
                "section": "serve",
                "case": "fine",
                "expected": 10,
                "got": 10,
                "lost": 0,
                "p99_ms": 1.25,
                "ok": True,
            },
            {"section": "serve", "case": "broken", "lost": 3, "ok": False, "note": "why"},
        ]

    monkeypatch.setitem(sys.modules, "rel_serve", types.SimpleNamespace(run=run))
    monkeypatch.setitem(sys.modules, "rel_frames", None)  # not merged: the import fails
    out = tmp_path / "rel.json"
    assert bench.main(["--small", "--only", "serve,frames", "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert seen == [("small", True)]
    assert "scripts/rel_frames.py not found" in text and "FAIL" in text and "1.25" in text
    header = next(line for line in text.splitlines() if line.startswith("section"))
    assert header.split()[:5] == ["section", "case", "expected", "got", "lost"]
    saved = json.loads(out.read_text())
    assert [r["case"] for r in saved["rows"]][:2] == ["fine", "broken"] and saved["scale"] == "small"
    monkeypatch.setitem(sys.modules, "rel_serve", types.SimpleNamespace(run=lambda s, w: run(s, w)[:1]))
    assert bench.main(["--small", "--only", "serve"]) == 0
