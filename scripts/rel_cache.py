"""Reliability section `cache`: kill -9 during cache writes, and two writers on one cache at once.

Writers are forked processes (the parent's imports carry over, so a start costs milliseconds, not the
seconds a fresh interpreter takes) writing real sample rows into one `ParquetStore`. Each write is tagged in
its `source` column with a sequence number, and acknowledged on a pipe only once `write`/`append` returned.

kill -9: a writer rewrites the sample symbols in a loop; the parent SIGKILLs it at a random moment and
starts the next one, `kills` times. Then: every Parquet file must read and hold exactly what its embedded
checksum says (unreadable / torn: 0); no symbol may hold an older version than its last acknowledged write
(writes lost: 0); temp files left by the kills must not be listed as symbols. The manifest is written after
the symbol's file, so a kill between the two leaves it one version behind ("stale"); `repair()` must make
`verify()` clean again (manifest mismatches after repair: 0).

Two writers: both append disjoint 25-row chunks of the same symbols' histories at once, one walking the
symbols forward, the other backward; then every symbol must hold each acknowledged chunk's rows exactly
(rows lost / torn: 0) and the manifest must agree with the files without any repair.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from deepq.data.cache import ParquetStore, load_cache_panel
from deepq.data.panel import load_prices
from deepq.data.store import frame_checksum, to_cache_frame

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "prices.parquet"
SYMBOLS = ["AAPL", "JPM", "XOM", "SPY", "^GSPC"]
CHUNK_ROWS = 25


def sample_frames(start: str, end: str) -> dict[str, pd.DataFrame]:
    long = load_prices(SAMPLE, symbols=SYMBOLS, start=start, end=end)
    return {s: to_cache_frame(g, symbol=s) for s, g in long.groupby("symbol")}


def tagged(frame: pd.DataFrame, seq: int) -> pd.DataFrame:
    return frame.assign(source=f"bench-{seq}")


def seq_of(frame: pd.DataFrame) -> int:
    return max(int(s.rsplit("-", 1)[1]) for s in frame["source"].unique())


# ---- kill -9 during writes --------------------------------------------------------------------------------


def rewrite_forever(root: str, frames: dict[str, pd.DataFrame], seq0: int, ack_fd: int) -> None:
    store = ParquetStore(root, lock_timeout_s=10)
    names = list(frames)
    for i in range(10**9):
        sym = names[i % len(names)]
        store.write(sym, tagged(frames[sym], seq0 + i))
        os.write(ack_fd, f"{sym}\t{seq0 + i}\n".encode())


def read_acks(fd: int) -> list[tuple[str, int]]:
    data = b""
    while chunk := os.read(fd, 1 << 16):
        data += chunk
    lines = data.decode().splitlines()
    return [(s, int(n)) for s, n in (line.split("\t") for line in lines if line.count("\t") == 1)]


def kill_during_writes(root: Path, frames: dict[str, pd.DataFrame], kills: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    ctx = mp.get_context("fork")
    store = ParquetStore(root)
    store.write_many(list((s, tagged(f, 0)) for s, f in frames.items()))  # a first version of each
    last_acked = dict.fromkeys(frames, 0)
    acked = 0
    t0 = time.perf_counter()
    for k in range(kills):
        r, w = os.pipe()
        child = ctx.Process(target=rewrite_forever, args=(str(root), frames, (k + 1) * 10**6, w))
        child.start()
        os.close(w)
        time.sleep(rng.uniform(0.02, 0.3))
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        for sym, seq in read_acks(r):
            last_acked[sym] = max(last_acked[sym], seq)
            acked += 1
        os.close(r)
    wall = time.perf_counter() - t0

    temps = [p for p in root.rglob("*.tmp")]
    listed = set(store.symbols())
    unreadable = torn = lost = 0
    for sym in frames:
        try:
            back = store.read_symbol(sym)
            meta = pq.read_schema(store.path(sym)).metadata or {}
        except Exception:
            unreadable += 1
            continue
        if back is None:
            unreadable += 1
            continue
        torn += frame_checksum(back) != meta.get(b"deepq.checksum", b"").decode() or len(back) != len(
            frames[sym]
        )
        lost += seq_of(back) < last_acked[sym]
    stale = len(store.verify())
    fixed = store.repair()
    mismatches = len(store.verify())
    left = len(list(root.rglob("*.tmp")))
    panel = load_cache_panel(root)  # what training reads: every symbol, the temp files not among them
    return {
        "section": "cache",
        "case": f"kill -9 x{kills} during writes",
        "expected": acked,
        "got": acked - lost,
        "lost": lost,
        "kills": kills,
        "unreadable": unreadable,
        "torn": torn,
        "temp_files": len(temps),
        "stale": stale,
        "mismatches": mismatches,
        "wall_s": round(wall, 1),
        "note": f"kills left {len(temps)} temp files (no symbol), {stale} stale manifest row(s); "
        f"repair(): {len(fixed)} fixes, {left} temp left",
        "ok": unreadable == 0
        and torn == 0
        and lost == 0
        and mismatches == 0
        and left == 0
        and listed <= set(frames)
        and set(panel.symbols) == set(frames),
    }


# ---- two writers at once ----------------------------------------------------------------------------------


def append_chunks(root: str, jobs: list[tuple[str, int, pd.DataFrame]], ack_fd: int) -> None:
    store = ParquetStore(root, lock_timeout_s=60)
    for sym, seq, rows in jobs:
        store.append(sym, tagged(rows, seq))
        os.write(ack_fd, f"{sym}\t{seq}\n".encode())


def two_writers(root: Path, frames: dict[str, pd.DataFrame]) -> dict:
    ctx = mp.get_context("fork")
    chunks = {
        s: [f.iloc[i : i + CHUNK_ROWS] for i in range(0, len(f), CHUNK_ROWS)] for s, f in frames.items()
    }
    plan: list[list[tuple[str, int, pd.DataFrame]]] = [[], []]
    for sym, parts in chunks.items():
        for i, part in enumerate(parts):
            plan[i % 2].append((sym, i, part))
    plan[1].reverse()  # the other writer walks the symbols backward: they meet on each one
    children, pipes = [], []
    t0 = time.perf_counter()
    for jobs in plan:
        r, w = os.pipe()
        child = ctx.Process(target=append_chunks, args=(str(root), jobs, w))
        child.start()
        os.close(w)
        children.append(child)
        pipes.append(r)
    acks = []
    for child, r in zip(children, pipes, strict=True):
        acks.extend(read_acks(r))
        child.join()
        os.close(r)
    wall = time.perf_counter() - t0

    store = ParquetStore(root)
    expected = lost = torn = 0
    for sym, seq in acks:
        want = tagged(chunks[sym][seq], seq)
        got = store.read_symbol(sym)
        have = got[got["source"] == f"bench-{seq}"] if got is not None else want.iloc[:0]
        expected += len(want)
        lost += len(want) - len(have)
        if len(have) == len(want):
            torn += int(
                frame_checksum(have.reset_index(drop=True)) != frame_checksum(want.reset_index(drop=True))
            )
    total = sum(len(f) for f in frames.values())
    extra = len(store.read()) - (expected - lost)  # rows no writer wrote: duplicates or strays
    mismatches = len(store.verify())
    return {
        "section": "cache",
        "case": "2 writers appending to the same 5 symbols",
        "expected": total,
        "got": expected - lost,
        "lost": lost + (total - expected),
        "torn": int(torn) + extra,
        "mismatches": mismatches,
        "wall_s": round(wall, 1),
        "note": f"{len(acks)} appends acknowledged, {CHUNK_ROWS}-row chunks; exit codes "
        f"{[c.exitcode for c in children]}",
        "ok": lost == 0
        and expected == total
        and torn == 0
        and extra == 0
        and mismatches == 0
        and all(c.exitcode == 0 for c in children),
    }


def run(scale: str, workdir: Path) -> list[dict]:
    full = scale == "full"
    frames = sample_frames("2015-01-01" if full else "2019-01-01", "2019-12-31")
    return [
        kill_during_writes(workdir / "killed", frames, kills=100 if full else 10),
        two_writers(workdir / "shared", frames),
    ]


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for row in run(sys.argv[1] if len(sys.argv) > 1 else "small", Path(d)):
            print(row)
