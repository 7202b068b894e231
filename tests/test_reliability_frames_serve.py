"""`make reliability`, small: the frames section (generated malformed frames through the real import and panel
loader) and the serve section (loopback requests, hostile ones included, to a real `deepq serve` process)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def script(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def pair(text: str) -> tuple[int, int]:
    """'3/4' (import/panel) -> (3, 4)."""
    a, b = text.split("/")
    return int(a), int(b)


def test_every_malformed_frame_is_refused_naming_symbol_and_field_or_read_sanely(tmp_path):
    rel = script("rel_frames")
    rows = {r["case"]: r for r in rel.run("small", tmp_path)}
    assert set(rows) == set(rel.FAMILIES)
    assert sum(r["expected"] for r in rows.values()) >= 90
    for case, r in rows.items():
        assert r["ok"] and r["unhandled"] == 0 and r["got"] == r["expected"] >= 5, (case, r)
        assert r.get("note") is None, r
        if r["errors"]:
            assert r["named"] == f"{r['errors']}/{r['errors']}"  # every refusal named symbol and field
    for case in (
        "missing columns",
        "negative or zero prices",
        "negative volume",
        "duplicated dates",
        "empty frame",
    ):
        assert pair(rows[case]["refused"]) == (rows[case]["expected"],) * 2, rows[case]  # both entry points
    for case in ("unsorted dates", "high below low"):  # read as they are (import clamps high/low), sorted
        assert pair(rows[case]["accepted"]) == (rows[case]["expected"],) * 2, rows[case]
    assert sum(pair(rows["bad or empty symbol names"]["refused"])) > 0


def test_deepq_serve_answers_every_request_without_a_5xx(tmp_path, tmp_path_factory):
    from tests.serve.fdr import train_registry

    rel = script("rel_serve")
    rows = {r["case"]: r for r in rel.run("small", tmp_path, registry=train_registry(tmp_path_factory))}
    assert 280 <= sum(r["requests"] for r in rows.values()) <= 340
    assert len(rows) == len(rel.kinds())
    for case, r in rows.items():
        assert r["ok"] and r["5xx"] == 0 and r["wrong"] == 0 and r["requests"] >= 1, (case, r)
        if case.startswith("valid: "):
            assert r["errors"] == 0, r
        else:
            assert case.startswith("hostile: ") and r["errors"] == r["requests"], r
        assert 0 < r["p50_ms"] <= r["p99_ms"]
    assert "0 error line(s) in its log" in rows["valid: predict: one symbol"]["note"]
