"""Warm predict latency: mask-fill and classification answers from a model kept loaded.

    python bench/predict_latency.py [--n 100] [--steps 2]

Trains two tiny runs on demo:minilm (all-MiniLM-L6-v2, 22M parameters) in a temporary
TUITUNE_HOME: classification on demo:bbc-news and masked LM, `--steps` steps each. For each it
times a one-shot `tuitune predict RUN TEXT` (a fresh engine process per call, as before the
stdin mode), then one `python -m tuitune.engine serve` process, as `tuitune predict RUN` without
TEXT and the UI use: the first answer (loads the model) and `--n` warm answers, round trip from the
client (JSON line in, JSON line out), on distinct sentences, and the engine's CPU time per answer
(user + system, read with psutil: less sensitive than wall time to other load on the machine).
Target: warm p50 <= 50 ms. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
TARGET_MS = 50.0

SENTENCES = [
    "The government announced new plans for the economy today.",
    "The striker scored twice in the second half of the match.",
    "Shares in the technology company rose after strong results.",
    "The film won three awards at the ceremony last night.",
    "Ministers will debate the new education bill next week.",
    "The new phone has a faster chip and a bigger screen.",
    "The band will tour Europe next summer with a new album.",
    "The central bank kept interest rates unchanged.",
]
MASKED = [s.replace(w, "[MASK]", 1) for s, w in zip(SENTENCES, ["economy", "match", "company", "awards",
                                                                 "education", "phone", "album", "rates"])]


def train(preset: str, steps: int, env: dict) -> int:
    out = subprocess.run(
        [str(BIN / "tuitune"), "run", preset, "--json", "--set", f"training.max_steps={steps}",
         "--set", "training.eval_steps=1000000", "--set", "evaluation.baseline=false",
         "--set", "evaluation.on_test=false", "--set", "data.max_train_samples=64",
         "--set", "data.max_eval_samples=16", "--set", "training.use_cpu=true"],
        capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"training {preset} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout)["id"]


def one_shot(run_id: int, text: str, env: dict) -> float:
    t = time.perf_counter()
    out = subprocess.run([str(BIN / "tuitune"), "predict", str(run_id), text, "--json"],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"tuitune predict failed: {out.stderr.strip()}")
    return time.perf_counter() - t


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def warm(run_id: int, texts: list[str], n: int) -> dict:
    import psutil

    from tuitune.predict_client import PredictClient

    client = PredictClient(run_id)
    try:
        t = time.perf_counter()
        client.ask(texts[0])
        first = time.perf_counter() - t
        for text in texts:  # warm-up: every sentence once
            client.ask(text)
        engine = psutil.Process(client._proc.pid)  # type: ignore[union-attr]
        times, cpu = [], []
        for i in range(n):
            c = sum(engine.cpu_times()[:2])
            t = time.perf_counter()
            client.ask(texts[i % len(texts)])
            times.append(time.perf_counter() - t)
            cpu.append(sum(engine.cpu_times()[:2]) - c)
    finally:
        client.close()
    return {"first": first, "p50": pct(times, 0.5) * 1000, "p95": pct(times, 0.95) * 1000,
            "mean": statistics.mean(times) * 1000, "cpu": statistics.median(cpu) * 1000}


def measure(args, env: dict) -> list[list[str]]:
    rows = []
    for task, preset, texts in (("classification", "bbc-news-minilm", SENTENCES), ("mask-fill", "minilm-mlm", MASKED)):
        print(f"training a {args.steps}-step {task} run on demo:minilm…", file=sys.stderr)
        run_id = train(preset, args.steps, env)
        cold = one_shot(run_id, texts[0], env)
        w = warm(run_id, texts, args.n)
        rows.append([task, f"{cold:.1f} s", f"{w['first']:.1f} s", f"{w['p50']:.1f} ms", f"{w['p95']:.1f} ms",
                     f"{w['cpu']:.0f} ms", "yes" if w["p50"] <= TARGET_MS else "NO"])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="warm answers timed per task")
    ap.add_argument("--steps", type=int, default=2, help="training steps of each tiny run")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="tuitune-bench-predict-")
    env = {**os.environ, "TUITUNE_HOME": home, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    os.environ.update(TUITUNE_HOME=home, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    try:
        rows = measure(args, env)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    head = ["task", "one-shot CLI call", "serve: 1st answer", "warm p50", "warm p95", "engine CPU/answer",
            f"p50 <= {TARGET_MS:.0f} ms"]
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"demo:minilm, {args.n} warm answers per task, {os.cpu_count()} CPUs (load average {load:.1f}), "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    for r in [head, ["-" * w for w in widths]] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
