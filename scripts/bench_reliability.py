"""`make reliability`: one table of fault figures, every "lost" column expected at 0.

    python scripts/bench_reliability.py [--small] [--only sources,cache,frames,serve] [--json out.json]

Each section is a plain module beside this script (scripts/rel_<name>.py) with
`run(scale, workdir) -> list[dict]`: one dict per table row, with `section`, `case`, its figures (`expected`,
`got`, `lost`, `fallbacks`, `errors`, `p99_ms`, ...; a figure a row lacks prints blank) and `ok` (every
lost/unhandled figure is 0). Each section runs in a fresh temp folder. A section whose module is absent, or
that raises, gets one row saying so (not ok) and the others still run. Exit code 1 if any row is not ok.

- sources: every vendor's faults over a loopback HTTP server, and one vendor down (rel_sources.py)
- cache:   kill -9 during cache writes, two writers at once (rel_cache.py)
- frames:  generated malformed frames through import and the panel loader (rel_frames.py)
- serve:   loopback requests to `deepq serve`, hostile ones included (rel_serve.py)

`--small` runs the small versions (what tests/test_reliability.py checks); docs/reliability.md has the full table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SECTIONS = ("sources", "cache", "frames", "serve")
# figures in this order first; a section's other keys follow, then `ok` and the note
ORDER = (
    "section",
    "case",
    "expected",
    "got",
    "lost",
    "fallbacks",
    "errors",
    "unhandled",
    "requests",
    "retries",
    "waited_ms",
    "kills",
    "unreadable",
    "torn",
    "temp_files",
    "stale",
    "mismatches",
    "p50_ms",
    "p99_ms",
    "wall_s",
)
NOTE_CHARS = 100


def run_section(name: str, scale: str) -> tuple[list[dict], float]:
    """The section's rows and its wall time; a missing or failing section is one row that says so."""
    t0 = time.perf_counter()
    try:
        module = importlib.import_module(f"rel_{name}")
        with tempfile.TemporaryDirectory(prefix=f"deepq-rel-{name}-") as tmp:
            rows = module.run(scale, Path(tmp))
    except ModuleNotFoundError as e:
        if e.name != f"rel_{name}":
            return [failed(name, e)], time.perf_counter() - t0
        return [
            {"section": name, "case": f"scripts/rel_{name}.py not found: section not run", "ok": False}
        ], 0.0
    except Exception as e:  # the table still prints; the traceback goes to stderr
        return [failed(name, e)], time.perf_counter() - t0
    return rows, time.perf_counter() - t0


def failed(name: str, e: Exception) -> dict:
    traceback.print_exception(e)
    return {"section": name, "case": f"raised {type(e).__name__}: {e}"[:NOTE_CHARS], "ok": False}


def columns(rows: Sequence[dict]) -> list[str]:
    seen = [k for k in ORDER if any(k in r for r in rows)]
    for r in rows:
        seen.extend(k for k in r if k not in seen and k not in ("ok", "note"))
    return [*seen, "ok", "note"]


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "ok" if value else "FAIL"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows: Sequence[dict]) -> str:
    """Plain aligned text: names left, figures right, the note last and cut."""
    cols = columns(rows)
    cells = [[cell(r.get(c)) for c in cols] for r in rows]
    for line in cells:
        line[-1] = line[-1][:NOTE_CHARS]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(cols)]
    left = {"section", "case", "note"}

    def fmt(values: Sequence[str]) -> str:
        out = [v.ljust(w) if c in left else v.rjust(w) for c, v, w in zip(cols, values, widths, strict=True)]
        return "  ".join(out).rstrip()

    return "\n".join([fmt(cols), fmt(["-" * w for w in widths]), *(fmt(line) for line in cells)])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="the small versions (seconds, as the tests run)")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated, of {','.join(SECTIONS)}")
    ap.add_argument("--json", help="also write the rows and the run's details here")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown section(s) {unknown}; known: {','.join(SECTIONS)}")
    scale = "small" if args.small else "full"
    sys.path.insert(0, str(Path(__file__).resolve().parent))

    rows: list[dict] = []
    walls: dict[str, float] = {}
    for name in names:
        got, walls[name] = run_section(name, scale)
        rows.extend(got)
    bad = [r for r in rows if not r.get("ok")]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}"
    print(f"deepq reliability ({scale}), {when}, {machine}")
    print(table(rows))
    print("wall: " + ", ".join(f"{n} {s:.1f} s" for n, s in walls.items()))
    print(
        f"{len(rows) - len(bad)}/{len(rows)} rows ok"
        + (f"; NOT ok: {[r['case'] for r in bad]}" if bad else "")
    )
    if args.json:
        details = {"scale": scale, "when": when, "machine": machine, "wall_s": walls, "rows": rows}
        Path(args.json).write_text(json.dumps(details, indent=2, default=str) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
