"""tuitune's engine vs a bare transformers.Trainer script: same model, data and steps, alternating.

    python bench/trainer_overhead.py [--steps 30] [--rounds 2]

Each round runs the bare script (bench/bare_trainer.py) and `tuitune run bbc-news-minilm`
(in ABBA order)
with the same steps (no mid-run evaluation, no baseline, as the bare script), and reads the
Trainer's own train-loop figure (train_steps_per_second) from each. tuitune adds its history
writes, stop polling and the 1 Hz system sampler on top. Target: ratio >= 0.97.
Also times `tuitune --help` (target <= 0.5 s). Prints a table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def bare(steps: int) -> float:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bare_trainer.py"), "--steps", str(steps)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["steps_per_second"]


def tuitune(steps: int, home: str) -> float:
    env = {**os.environ, "TUITUNE_HOME": home, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [str(BIN / "tuitune"), "run", "bbc-news-minilm", "--json",
         "--set", f"training.max_steps={steps}", "--set", "training.eval_steps=1000000",
         "--set", "training.save_steps=1000000", "--set", "evaluation.baseline=false",
         "--set", "training.use_cpu=true"],
        capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"tuitune run failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)["latest"]["train/train_steps_per_second"]


def help_time(n: int = 5) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([str(BIN / "tuitune"), "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    home = tempfile.mkdtemp(prefix="tuitune-bench-")
    rows = []
    for r in range(args.rounds):
        # ABBA order: the machine's speed drifts, so neither side always goes first.
        if r % 2 == 0:
            b = bare(args.steps)
            t = tuitune(args.steps, home)
        else:
            t = tuitune(args.steps, home)
            b = bare(args.steps)
        rows.append((r + 1, b, t))
        print(f"round {r + 1}: bare {b:.3f} steps/s, tuitune {t:.3f} steps/s", file=sys.stderr)
    b_med = statistics.median(x[1] for x in rows)
    t_med = statistics.median(x[2] for x in rows)
    h = help_time()
    print(f"\nMiniLM full fine-tune on BBC News, {args.steps} steps, batch 16, max_length 128, "
          f"{os.cpu_count()} CPU cores\n")
    print(f"| round | bare Trainer steps/s | tuitune steps/s | ratio |")
    print(f"|---|---|---|---|")
    for r, b, t in rows:
        print(f"| {r} | {b:.3f} | {t:.3f} | {t / b:.3f} |")
    ratios = sorted(t / b for _, b, t in rows)
    print(f"| median | {b_med:.3f} | {t_med:.3f} | **{statistics.median(ratios):.3f}** (median of the "
          f"rounds' ratios; target >= 0.97) |")
    print(f"\n`tuitune --help` wall time (median of 5): {h * 1000:.0f} ms (target <= 500 ms)")


if __name__ == "__main__":
    main()
