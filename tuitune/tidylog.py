"""The monitor's tidy log: a run's events and its logged training metrics, formatted, in time order.

Built from the history (never from engine.log, whose progress bars and Trainer's stringified dicts
are for a human debugging the engine; the monitor shows that raw log on a key).
"""

from __future__ import annotations

import time
from typing import Any, Iterable

# train/* metric keys shown on a step's line, with their short names and formats
STEP_KEYS = [("train/loss", "loss", "{:.4f}"), ("train/learning_rate", "lr", "{:.2e}"),
             ("train/grad_norm", "grad", "{:.3g}"), ("train/tokens_per_second", "tok/s", "{:,.0f}")]


def _clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000))


def step_lines(rows: Iterable[dict[str, Any]]) -> list[tuple[int, str]]:
    """(time, line) for every step that logged a training loss: `step 40  loss 0.4321  lr 4.20e-05 …`."""
    by_step: dict[int, dict[str, Any]] = {}
    for r in rows:
        if r["key"].startswith("train/"):
            d = by_step.setdefault(r["step"], {"time": r["time"]})
            d[r["key"]] = r["value"]
            d["time"] = max(d["time"], r["time"])
    out = []
    for step, d in sorted(by_step.items()):
        if "train/loss" not in d:
            continue
        parts = [f"{short} {fmt.format(d[key])}" for key, short, fmt in STEP_KEYS if d.get(key) is not None]
        out.append((d["time"], f"{_clock(d['time'])} step {step:<5d} " + "  ".join(parts)))
    return out


def event_lines(events: Iterable[dict[str, Any]]) -> list[tuple[int, str]]:
    out = []
    for e in events:
        where = f" @{e['step']}" if e.get("step") is not None else ""
        msg = f" {e['message']}" if e.get("message") else ""
        out.append((e["time"], f"{_clock(e['time'])} {e['kind']}{where}{msg}"))
    return out


def tidy(events: Iterable[dict[str, Any]], metric_rows: Iterable[dict[str, Any]], n: int = 6) -> list[str]:
    """The last `n` lines of events and per-step training metrics, oldest first."""
    # at the same millisecond a step's metrics come before the events they caused (checkpoint, eval)
    merged = sorted([(t, 0, ln) for t, ln in step_lines(metric_rows)] + [(t, 1, ln) for t, ln in event_lines(events)],
                    key=lambda x: x[:2])
    return [line for _, _, line in merged[-n:]]
