"""Time from launch to the first training step on a BBC preset, phase by phase.

    python bench/first_step.py [--preset bbc-news-minilm] [--tuitune BIN ...] [--rounds 1]

Runs `tuitune run PRESET --set training.max_steps=1` in a fresh TUITUNE_HOME (so nothing is
cached) for each `--tuitune` executable given (e.g. this checkout's and main's, alternating), then
reads the timestamps the run left in its history: run created (launch), engine started, tokenizer
loaded, data ready, model built, baseline evaluation recorded, first training step logged. An
installation without the tokenizer/data events shows those phases merged into the next one.
Prints one table (seconds).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent / "tuitune"

# (label, how to find the end of the phase in the history)
PHASES = [
    ("engine start", "event:started"),
    ("tokenizer", "event:tokenizer"),
    ("data (load+tokenize)", "event:data"),
    ("model (load+method)", "event:model"),
    ("baseline eval", "eval:baseline"),
    ("first step", "metric:1"),
]


def launch(tuitune: str, preset: str, home: str) -> None:
    env = {**os.environ, "TUITUNE_HOME": home, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run([tuitune, "run", preset, "--json", "--set", "training.max_steps=1",
                    "--set", "training.use_cpu=true", "--set", "evaluation.on_test=false"],
                   capture_output=True, text=True, env=env, check=True, cwd=home)  # cwd: no checkout shadows the install


def timestamps(home: str) -> dict[str, float]:
    """Seconds since launch (run created) at the end of each phase found in the history."""
    db = next(Path(home).rglob("history.db"))
    conn = sqlite3.connect(db)
    (run_id, created), = conn.execute("SELECT id, created_at FROM runs").fetchall()
    found: dict[str, float] = {}
    for kind, t in conn.execute("SELECT kind, MIN(time) FROM events WHERE run_id=? GROUP BY kind", (run_id,)):
        found[f"event:{kind}"] = (t - created) / 1000
    for phase, t in conn.execute("SELECT phase, MIN(time) FROM evaluations WHERE run_id=? GROUP BY phase", (run_id,)):
        found[f"eval:{phase}"] = (t - created) / 1000
    row = conn.execute("SELECT MIN(time) FROM metrics WHERE run_id=? AND key='train/loss' AND step=1", (run_id,)).fetchone()
    if row and row[0]:
        found["metric:1"] = (row[0] - created) / 1000
    return found


def phases(found: dict[str, float]) -> list[float | None]:
    """Each phase's own duration; a phase missing from the history folds into the next one."""
    out, last = [], 0.0
    for _, key in PHASES:
        if key not in found:
            out.append(None)
            continue
        out.append(found[key] - last)
        last = found[key]
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="bbc-news-minilm")
    p.add_argument("--tuitune", action="append", help="tuitune executables to compare (default: this venv's)")
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    bins = args.tuitune or [str(BIN)]
    results: dict[str, list[list[float | None]]] = {b: [] for b in bins}
    for r in range(args.rounds):
        for b in (bins if r % 2 == 0 else bins[::-1]):
            with tempfile.TemporaryDirectory() as home:
                launch(b, args.preset, home)
                results[b].append(phases(timestamps(home)))
    width = max(len(label) for label, _ in PHASES) + 2
    print(f"launch -> first training step, {args.preset}, seconds (mean of {args.rounds} round(s))")
    print("phase".ljust(width) + "".join(f"{Path(b).parent.parent.parent.name[:18]:>20}" for b in bins))
    for i, (label, _) in enumerate(PHASES + [("total", "")]):
        cells = []
        for b in bins:
            vals = [sum(x for x in row if x is not None) if label == "total" else row[i] for row in results[b]]
            vals = [v for v in vals if v is not None]
            cells.append(f"{sum(vals) / len(vals):>20.1f}" if vals else f"{'-':>20}")
        print(label.ljust(width) + "".join(cells))


if __name__ == "__main__":
    main()
