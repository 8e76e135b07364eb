"""Cold start of the UI: process start → first drawn Runs screen, and `tuitune --help` wall time.

Each sample is a fresh Python process (as a user launching `tuitune`): it builds the app with
`make_app()`, runs it headless, and exits on the first screen's first draw (the Runs table
mounted and painted). Prints a table of median / min / max over N runs. Target: ≤ 1 s; --help ≤ 0.5 s.

    python bench/ui_startup.py [-n 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = r"""
import time, sys
t0 = float(sys.argv[1])
from tuitune.app import make_app
app = make_app()

async def first_frame():
    async with app.run_test(size=(80, 24)) as pilot:
        from tuitune.screens.runs import RunsScreen
        while not isinstance(app.screen, RunsScreen) or not app.screen.query_one("#runs").size.height:
            await pilot.pause(0.005)
        await pilot.pause(0)
        print(f"{time.time() - t0:.4f}")

import asyncio
asyncio.run(first_frame())
"""


def once(cmd: list[str], env: dict) -> float:
    t0 = time.time()
    out = subprocess.run(cmd + [str(t0)] if cmd[-1] == PROBE else cmd, capture_output=True, text=True,
                         env=env, cwd=ROOT)
    wall = time.time() - t0
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd[:3])}…\n{out.stderr[-2000:]}")
    if cmd[-1] == PROBE:
        return float(out.stdout.strip().splitlines()[-1])
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=7)
    args = ap.parse_args()
    env = dict(os.environ, TUITUNE_HOME=tempfile.mkdtemp(prefix="tuitune-bench-"), OMP_NUM_THREADS="1")
    exe = Path(sys.executable).parent / "tuitune"
    help_cmd = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "tuitune.cli", "--help"]
    rows = []
    for label, cmd, target in [("UI cold start → first screen", [sys.executable, "-c", PROBE], 1.0),
                               ("tuitune --help", help_cmd, 0.5)]:
        once(cmd, env)  # warm the OS file cache once: "cold" here means a new process
        xs = [once(cmd, env) for _ in range(args.n)]
        rows.append((label, statistics.median(xs), min(xs), max(xs), target))
    print(f"{'measure':32s} {'median':>8s} {'min':>8s} {'max':>8s} {'target':>8s}")
    for label, med, lo, hi, target in rows:
        ok = "ok" if med <= target else "SLOW"
        print(f"{label:32s} {med:7.3f}s {lo:7.3f}s {hi:7.3f}s {target:7.1f}s {ok}")
    print(f"({args.n} runs each, {os.cpu_count()} CPUs, python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
