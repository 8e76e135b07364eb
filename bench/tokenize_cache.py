"""The tokenization cache: preparing demo:bbc-news for the MiniLM classifier, first run vs second.

    python bench/tokenize_cache.py              # 3 rounds, max_length 256
    python bench/tokenize_cache.py --rounds 1

Each round uses a fresh, empty TUITUNE_HOME and times the engine's data path (`Task.prepare`: read,
split, label ids, tokenize) three ways, side by side: the first run (empty cache: the demo set is
saved as Arrow files, then tokenized), the second run (same data, tokenizer and max_length: read from
datasets' fingerprint cache) and, for reference, the same steps on the in-memory dataset the engine
built before the cache existed (tokenizes every time). Prints a table of seconds (median of rounds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=256)
    args = ap.parse_args()

    import datasets
    from transformers import AutoTokenizer

    from tuitune import datasources, demo
    from tuitune.config import validate_config
    from tuitune.engine import data as data_mod
    from tuitune.engine.tasks import get_task

    datasets.disable_progress_bars()
    tok = AutoTokenizer.from_pretrained(str(demo.path("demo:minilm")))
    config = {"model": {"name_or_path": "demo:minilm"},
              "data": {"path": "demo:bbc-news", "max_length": args.max_length}}
    times: dict[str, list[float]] = {"first run (empty cache)": [], "second run (cached)": [],
                                     "in memory, no cache (before)": []}
    rows = 0
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as home:
            os.environ["TUITUNE_HOME"] = home
            for label in ("first run (empty cache)", "second run (cached)"):
                t0 = time.perf_counter()
                ds = get_task(validate_config(config)).prepare(tok)
                times[label].append(time.perf_counter() - t0)
                rows = sum(len(s) for s in ds.values())
            # The old path: the demo set as an in-memory Dataset (map results live in memory only).
            task = get_task(validate_config(config))
            t0 = time.perf_counter()
            raw = datasets.DatasetDict({"train": datasets.Dataset.from_dict(datasources.demo_reader("demo:bbc-news")())})
            task.tokenize(data_mod.splits(raw, task.cfg.data, task.cfg.training.seed), tok)
            times["in memory, no cache (before)"].append(time.perf_counter() - t0)

    first = statistics.median(times["first run (empty cache)"])
    print(f"demo:bbc-news ({rows} rows), MiniLM tokenizer, max_length {args.max_length}, "
          f"{args.rounds} round(s), median seconds\n")
    print(f"{'data path':32s} {'seconds':>8s} {'vs first':>9s}")
    for label, ts in times.items():
        m = statistics.median(ts)
        print(f"{label:32s} {m:8.2f} {m / first:8.2f}x")


if __name__ == "__main__":
    main()
