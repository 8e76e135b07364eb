"""How the CLI and the UI write numbers, times and metrics: one copy of each, no heavy imports.

- `fmt_time`, `fmt_clock`, `fmt_duration`, `eta_seconds`: wall times, elapsed times and the ETA.
- `fmt_metric`, `real_metrics`: a run's main metric, and an evaluation's metrics without the
  timing entries Trainer mixes in (runtime, samples per second, epoch, preparation time).
- `fmt_count`, `fmt_bytes`, `short`: parameter counts, sizes, long names.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from tuitune.records import RunRecord

TIMING_SUFFIXES = ("runtime", "per_second", "epoch", "_time")


# -- metrics ------------------------------------------------------------------------------------------

def is_real_metric(key: str, value: Any) -> bool:
    """True for a model-quality number (accuracy, loss…), False for timing and bookkeeping entries."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not key.endswith(TIMING_SUFFIXES) and "preparation" not in key


def real_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The real metrics of an evaluation, in their order."""
    return {k: v for k, v in metrics.items() if is_real_metric(k, v)}


def fmt_metric(run: "RunRecord", long: bool = False) -> str:
    """`accuracy 0.9776 (0.135)`: the main metric and, in brackets, its baseline before training."""
    if run.main_value is None:
        return "-"
    s = f"{run.main_metric or ''} {run.main_value:.4g}"
    if run.baseline_value is not None:
        s += f" (from {run.baseline_value:.4g})" if long else f" ({run.baseline_value:.3g})"
    return s


# -- times ----------------------------------------------------------------------------------------------

def _now_ms() -> int:
    return int(time.time() * 1000)


def fmt_time(ms: Optional[int]) -> str:
    """A wall time (epoch milliseconds) as `2026-11-25 18:42`, local time."""
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def fmt_clock(seconds: float) -> str:
    """Elapsed seconds as `m:ss`, or `h:mm:ss` from an hour on."""
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def fmt_duration(run: "RunRecord", now: Optional[int] = None) -> str:
    """How long a run has trained: to its end, or to now (ms) while it is live."""
    if not run.started_at:
        return "-"
    end = run.ended_at or now or _now_ms()
    return fmt_clock((end - run.started_at) / 1000)


def eta_seconds(run: "RunRecord", now: Optional[int] = None) -> Optional[float]:
    """Seconds left at the pace so far, or None before the first step (or without a total)."""
    step, total = run.step or 0, run.max_steps or 0
    if not (run.started_at and step and total):
        return None
    elapsed = ((now or _now_ms()) - run.started_at) / 1000
    return elapsed / step * (total - step)


# -- sizes and names -------------------------------------------------------------------------------------

def fmt_count(n: Optional[float]) -> str:
    if n is None:
        return "N/A"
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return str(int(n))


def fmt_bytes(n: Optional[float]) -> str:
    if n is None:
        return "N/A"
    for unit, div in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} B"


def fmt_value(v: Any, none: str = "-") -> str:
    """A config or sampled value in a table: floats to 4 significant digits, None as `none`."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return none if v is None else str(v)


def short(s: Optional[str], n: int = 24) -> str:
    """A long name cut from the left (`…/models/bert`), so its most telling end stays visible."""
    s = s or ""
    return s if len(s) <= n else "…" + s[-(n - 1):]


# -- evaluation depth (issue 9): resources, per-class changes, probes ---------------------------------------

def fmt_resources(run: "RunRecord") -> str:
    """`wall 1:02 · train 0:55 · peak RAM 1.8 GB · peak GPU N/A · 1234 tokens/s` (N/A: not measured)."""
    t = lambda s: "N/A" if s is None else fmt_clock(s)  # noqa: E731
    tps = "N/A" if run.tokens_per_s is None else f"{run.tokens_per_s:,.0f}"
    return (f"wall {t(run.wall_time_s)} · train {t(run.train_time_s)} · peak RAM {fmt_bytes(run.peak_ram_bytes)}"
            f" · peak GPU {fmt_bytes(run.peak_gpu_bytes)} · {tps} tokens/s")


def resources(run: "RunRecord") -> dict[str, Any]:
    return {k: getattr(run, k) for k in ("wall_time_s", "train_time_s", "peak_ram_bytes", "peak_gpu_bytes",
                                         "tokens_per_s")}


def f1_changes(reports: list[tuple[str, int, dict[str, dict]]]) -> list[tuple[str, Optional[float], Optional[float], int]]:
    """Per class: (label, F1 at the baseline, F1 at the final evaluation — or the latest one while a
    run trains —, support), from `History.class_report`. None where that evaluation is missing."""
    if not reports:
        return []
    base = next((r for p, _, r in reports if p == "baseline"), None)
    final = next((r for p, _, r in reversed(reports) if p == "final"), None)
    if final is None:
        final = next((r for p, _, r in reversed(reports) if p in ("eval", "final")), None)
    labels = list((final or base or {}).keys())
    return [(lab, base[lab]["f1"] if base and lab in base else None,
             final[lab]["f1"] if final and lab in final else None,
             int((final or base)[lab]["support"])) for lab in labels]


def fmt_change(before: Optional[float], after: Optional[float]) -> str:
    """`0.412 → 0.873 (+0.461)`, or what is known."""
    b = "N/A" if before is None else f"{before:.3f}"
    a = "N/A" if after is None else f"{after:.3f}"
    d = f" ({after - before:+.3f})" if before is not None and after is not None else ""
    return f"{b} → {a}{d}"


def probe_timeline(probes: list[dict[str, Any]]) -> list[tuple[str, list[tuple[str, int, str]]]]:
    """Probe answers grouped by probe, in order: [(input, [(phase, step, answer), ...])]."""
    by: dict[int, tuple[str, list]] = {}
    for p in probes:
        by.setdefault(p["idx"], (p["input"], []))[1].append((p["phase"], p["step"], p["answer"] or ""))
    return [by[i] for i in sorted(by)]
