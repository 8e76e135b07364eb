"""Load test of the run history: N writer processes log every step while M readers poll.

    python bench/history_load.py                 # 2 writers + 3 readers for 60 s
    python bench/history_load.py --duration 5    # a short run (the test suite uses one)

Writers do what an engine does (metrics every step; a system sample and heartbeat every 10 steps);
readers do what the UI and CLI do (list runs, new metric rows since the last seen rowid, latest
values, system samples). At the end every row a writer logged must be in the database, with steps
1..N and no gaps or duplicates. Prints rows written/s and read-latency percentiles as a table;
exits 1 on any error or missing row.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

KEYS = ("train/loss", "train/learning_rate", "train/grad_norm")


def writer(db: str, run_id: int, deadline: float, interval: float, out) -> None:
    from tuitune.history import History

    h = History(Path(db))
    step = rows = errors = 0
    first_error = ""
    while time.time() < deadline:
        step += 1
        try:
            h.log_metrics(run_id, step, {k: 1.0 / step for k in KEYS})
            rows += len(KEYS)
            if step % 10 == 0:
                h.log_system(run_id, {"cpu_percent": 50.0, "ram_used": 1, "ram_total": 2, "gpus": []}, step=step)
                h.heartbeat(run_id, step)
        except Exception as err:  # noqa: BLE001 - counted and reported
            errors += 1
            first_error = first_error or repr(err)
            step -= 1  # this step's rows were not written (its transaction rolled back)
        if interval:
            time.sleep(interval)
    h.close()
    out.put(("writer", run_id, step, rows, errors, first_error, []))


def reader(db: str, run_ids: list[int], deadline: float, interval: float, out) -> None:
    from tuitune.history import History

    h = History(Path(db))
    seen = {i: 0 for i in run_ids}
    lat: list[float] = []
    errors = 0
    first_error = ""
    while time.time() < deadline:
        t = time.perf_counter()
        try:
            h.list_runs()
            for i in run_ids:
                rows = h.metrics(i, after_rowid=seen[i])
                if rows:
                    seen[i] = rows[-1]["rowid"]
                h.latest(i)
                h.system(i, after_time=int(time.time() * 1000) - 5000)
            lat.append((time.perf_counter() - t) * 1000)
        except Exception as err:  # noqa: BLE001
            errors += 1
            first_error = first_error or repr(err)
        time.sleep(interval)
    h.close()
    out.put(("reader", None, 0, 0, errors, first_error, lat))


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--readers", type=int, default=3)
    ap.add_argument("--write-interval", type=float, default=0.001, help="sleep between a writer's steps (s)")
    ap.add_argument("--read-interval", type=float, default=0.05, help="sleep between a reader's polls (s)")
    ap.add_argument("--db", help="database file (default: a new temporary one)")
    args = ap.parse_args(argv)

    from tuitune.history import History

    db = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="tuitune-load-")) / "history.db"
    h = History(db)
    cfg = {"name": "load", "task": "classification", "model": {"name_or_path": "m"}, "method": {"name": "full"},
           "data": {"path": "d"}}
    run_ids = [h.create_run(cfg) for _ in range(args.writers)]
    for i in run_ids:
        h.set_status(i, "running")

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start = time.time() + 1.0  # after the children have imported
    deadline = start + args.duration
    procs = [ctx.Process(target=writer, args=(str(db), i, deadline, args.write_interval, out)) for i in run_ids]
    procs += [ctx.Process(target=reader, args=(str(db), run_ids, deadline, args.read_interval, out))
              for _ in range(args.readers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=args.duration + 120) for _ in procs]
    for p in procs:
        p.join()

    written = {r[1]: (r[2], r[3]) for r in results if r[0] == "writer"}
    errors = sum(r[4] for r in results)
    first = next((r[5] for r in results if r[5]), "")
    lat = [x for r in results if r[0] == "reader" for x in r[6]]
    missing = 0
    for i, (nsteps, nrows) in written.items():
        for key in KEYS:
            got = [m["step"] for m in h.metrics(i, key)]
            if got != list(range(1, nsteps + 1)):
                missing += abs(nsteps - len(got)) or 1
        in_db = h.conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id=?", (i,)).fetchone()[0]
        missing += max(0, nrows - in_db)
    total_rows = sum(n for _, n in written.values())
    h.close()

    table = [
        ("writers / readers", f"{args.writers} / {args.readers}"),
        ("duration (s)", f"{args.duration:g}"),
        ("rows written", f"{total_rows}"),
        ("rows written/s", f"{total_rows / args.duration:.0f}"),
        ("steps/s per writer", f"{sum(s for s, _ in written.values()) / args.duration / max(1, args.writers):.0f}"),
        ("reads (polls)", f"{len(lat)}"),
        ("read p50 (ms)", f"{pct(lat, 50):.2f}"),
        ("read p95 (ms)", f"{pct(lat, 95):.2f}"),
        ("read p99 (ms)", f"{pct(lat, 99):.2f}"),
        ("read max (ms)", f"{max(lat) if lat else float('nan'):.2f}"),
        ("errors", f"{errors}"),
        ("rows missing", f"{missing}"),
    ]
    print(f"{'measure':<18}{'value':>12}")
    print(f"{'-' * 18}{'-' * 12}")
    for k, v in table:
        print(f"{k:<18}{v:>12}")
    if first:
        print(f"first error: {first}")
    return 0 if errors == 0 and missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
