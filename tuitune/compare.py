"""Comparing runs: the trade-off table (main metric before → after, per-class F1, time, memory,
trainable share), the curves on a chosen x-axis, and the config differences.

Shared by `tuitune compare` and the UI's compare view, so both show the same figures. Runs of
different tasks compare side by side: each shows what it has ("—" where it has nothing). Reads the
history only; no torch.
"""

from __future__ import annotations

import bisect
from typing import Any, Optional

from tuitune import formatting
from tuitune.formatting import fmt_bytes
from tuitune.records import RunRecord

NONE = "—"
X_AXES = ("step", "epoch", "time")  # time: seconds since the run started (wall clock)
RESOURCE_FIELDS = ("wall_time_s", "train_time_s", "peak_ram_bytes", "peak_gpu_bytes", "tokens_per_s")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_diff(configs: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """The config fields (dotted keys) whose values differ between the runs."""
    flat = [flatten(c) for c in configs]
    keys = sorted(set().union(*flat)) if flat else []
    return [(k, [f.get(k) for f in flat]) for k in keys if len({repr(f.get(k)) for f in flat}) > 1]


def _phase_metrics(h, run_id: int) -> dict[str, dict[str, Any]]:
    return {e.phase: e.metrics for e in h.evaluations(run_id)}  # the last of each phase


def _per_class_f1(h, run_id: int) -> dict[str, dict[str, Optional[float]]]:
    """{label: {"baseline": f1, "final": f1}} from the history's class reports (empty when the run
    has none: another task, or a run recorded before they were stored)."""
    report = getattr(h, "class_report", None)
    if report is None:
        return {}
    try:
        rows = report(run_id)
    except Exception:  # noqa: BLE001 - an older history without the table: nothing to show
        return {}
    by_phase: dict[str, dict[str, Any]] = {}
    for phase, _step, labels in rows:
        by_phase[phase] = labels  # the last of each phase
    after = by_phase.get("final") or by_phase.get("eval") or {}
    before = by_phase.get("baseline") or {}
    out: dict[str, dict[str, Optional[float]]] = {}
    for label in list(before) + [k for k in after if k not in before]:
        out[str(label)] = {"baseline": (before.get(label) or {}).get("f1"), "final": (after.get(label) or {}).get("f1")}
    return out


def _resources(h, run: RunRecord) -> dict[str, Optional[float]]:
    """Wall time, train time, peak memory and tokens/s as recorded; where a run lacks them, wall time
    falls back on its start and end, train time on Trainer's train_runtime, tokens/s on the mean of
    the logged rates."""
    out: dict[str, Optional[float]] = {k: getattr(run, k, None) for k in RESOURCE_FIELDS}
    if out["wall_time_s"] is None and run.started_at and run.ended_at:
        out["wall_time_s"] = (run.ended_at - run.started_at) / 1000
    if out["train_time_s"] is None:
        runtime = h.metrics(run.id, "train/train_runtime")  # Trainer's own figure, logged when training ends
        out["train_time_s"] = runtime[-1]["value"] if runtime else None
    if out["tokens_per_s"] is None:
        rates = [r["value"] for r in h.metrics(run.id, "train/tokens_per_second")]
        out["tokens_per_s"] = sum(rates) / len(rates) if rates else None
    return out


def run_entry(h, run: RunRecord) -> dict[str, Any]:
    """One run's column of the comparison, as `tuitune compare --json` prints it."""
    phases = _phase_metrics(h, run.id)
    metric = run.main_metric
    test = (phases.get("test") or {}).get(f"eval_{metric}") if metric else None
    trainable_pct = (100 * run.trainable_params / run.total_params
                     if run.trainable_params and run.total_params else None)
    return {
        "id": run.id, "name": run.name, "status": run.status, "task": run.task, "model": run.model,
        "method": run.method, "dataset": run.dataset, "steps": run.step,
        "main_metric": metric, "baseline_value": run.baseline_value, "main_value": run.main_value,
        # a run with no final evaluation (pruned, stopped, crashed) still shows where it got to
        "last_eval_value": (phases.get("eval") or {}).get(f"eval_{metric}") if metric else None,
        "test_value": test,
        "per_class_f1": _per_class_f1(h, run.id),
        **_resources(h, run),
        "trainable_params": run.trainable_params, "total_params": run.total_params, "trainable_pct": trainable_pct,
    }


def compare(h, run_ids: list) -> dict[str, Any]:
    """The comparison of `run_ids` (numbers or numeric strings); an unknown run raises TuituneError."""
    from tuitune.errors import TuituneError

    if len(run_ids) < 2:
        raise TuituneError("compare needs two or more runs, e.g. `tuitune compare 3 4`")
    runs = [h.get_run(r) for r in run_ids]
    if len({r.id for r in runs}) < len(runs):
        raise TuituneError("compare the same run only once: give different run ids")
    return {"runs": [run_entry(h, r) for r in runs],
            "config_diff": [{"key": k, "values": v} for k, v in config_diff([r.config for r in runs])]}


# -- the table -----------------------------------------------------------------------------------

def _num(v: Optional[float]) -> str:
    if v is None:
        return NONE
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.1f}" if abs(v) >= 100 else f"{v:.3f}"


def _change(before: Optional[float], after: Optional[float]) -> str:
    if before is None and after is None:
        return NONE
    return f"{_num(before)} → {_num(after)}"


def _after(r: dict[str, Any]) -> str:
    """Main metric before → after; without a final evaluation, the last periodic one, marked."""
    if r["main_value"] is None and r.get("last_eval_value") is not None:
        return f"{_num(r['baseline_value'])} → {_num(r['last_eval_value'])} (last)"
    return _change(r["baseline_value"], r["main_value"])


def fmt_value(v: Any) -> str:
    """A config value for the differences table (4 significant digits; — for none)."""
    return formatting.fmt_value(v, NONE)


def _seconds(v: Optional[float]) -> str:
    if v is None:
        return NONE
    v = int(round(v))
    return f"{v // 3600}h{v % 3600 // 60:02d}m" if v >= 3600 else (f"{v // 60}m{v % 60:02d}s" if v >= 60 else f"{v}s")


def table_rows(data: dict[str, Any]) -> list[list[str]]:
    """Rows of the trade-off table: a label, then one cell per run."""
    runs = data["runs"]
    rows: list[list[str]] = [
        ["run"] + [f"{r['id']} {r['name'] or ''}".strip() for r in runs],
        ["method"] + [r["method"] or NONE for r in runs],  # its own row: a narrow column must not cut it
        ["task"] + [r["task"] or NONE for r in runs],
        ["main metric"] + [r["main_metric"] or NONE for r in runs],
        ["before → after"] + [_after(r) for r in runs],
    ]
    if any(r["test_value"] is not None for r in runs):
        rows.append(["test"] + [_num(r["test_value"]) for r in runs])
    labels: list[str] = []
    for r in runs:
        labels += [k for k in r["per_class_f1"] if k not in labels]
    for label in labels:
        rows.append([f"F1 {label}"] + [_change(r["per_class_f1"][label]["baseline"], r["per_class_f1"][label]["final"])
                                       if label in r["per_class_f1"] else NONE for r in runs])
    rows += [
        ["train time"] + [_seconds(r["train_time_s"]) for r in runs],
        ["wall time"] + [_seconds(r["wall_time_s"]) for r in runs],
        ["peak RAM"] + [fmt_bytes(r["peak_ram_bytes"]) if r["peak_ram_bytes"] else NONE for r in runs],
        ["peak GPU memory"] + [fmt_bytes(r["peak_gpu_bytes"]) if r["peak_gpu_bytes"] else NONE for r in runs],
        ["tokens/s"] + [NONE if r["tokens_per_s"] is None else f"{r['tokens_per_s']:.0f}" for r in runs],
        ["trainable"] + [NONE if r["trainable_pct"] is None else f"{r['trainable_pct']:.2f}%" for r in runs],
    ]
    return rows


def format_table(rows: list[list[str]], width: Optional[int] = None, label_max: int = 16) -> str:
    """Columns padded to fit; with `width`, cells are cut (…) so each line fits in it (the first
    column to at most `label_max` characters)."""
    n = max(len(r) for r in rows)
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(n)]
    if width is not None:
        label_w = min(widths[0], label_max)
        room = max(8, (width - label_w - 2 * (n - 1)) // max(1, n - 1))
        widths = [label_w] + [min(w, room) for w in widths[1:]]

    def cell(text: str, w: int) -> str:
        return (text if len(text) <= w else text[:w - 1] + "…").ljust(w)

    return "\n".join("  ".join(cell(r[i] if i < len(r) else "", widths[i]) for i in range(n)).rstrip() for r in rows)


# -- curves --------------------------------------------------------------------------------------

def curve(rows: list[dict[str, Any]], key: str, x: str, *, epochs: Optional[list[dict[str, Any]]] = None,
          start_ms: Optional[int] = None) -> tuple[list[float], list[float]]:
    """One metric's points with the x-axis as step, epoch (from the logged train/epoch, interpolated
    by step) or time (seconds since `start_ms`, else since the first point)."""
    pts = [r for r in rows if r["key"] == key]
    ys = [r["value"] for r in pts]
    if x == "step":
        return [r["step"] for r in pts], ys
    if x == "time":
        t0 = start_ms if start_ms is not None else (min(r["time"] for r in pts) if pts else 0)
        return [(r["time"] - t0) / 1000 for r in pts], ys
    if x == "epoch":
        ep = sorted((r["step"], r["value"]) for r in (epochs if epochs is not None else rows)
                    if r["key"] == "train/epoch")
        if not ep:
            return [], []
        steps = [s for s, _ in ep]
        out_x, out_y = [], []
        for r, y in zip(pts, ys):
            out_x.append(_interp(steps, [v for _, v in ep], r["step"]))
            out_y.append(y)
        return out_x, out_y
    raise ValueError(f"x-axis {x!r}: choose one of {', '.join(X_AXES)}")


def _interp(steps: list[int], values: list[float], step: int) -> float:
    i = bisect.bisect_left(steps, step)
    if i < len(steps) and steps[i] == step:
        return values[i]
    if i == 0:
        return values[0] * step / steps[0] if steps[0] else values[0]
    if i == len(steps):
        s0, v0 = steps[-1], values[-1]
        per_step = v0 / s0 if s0 else 0.0
        return v0 + per_step * (step - s0)
    s0, s1, v0, v1 = steps[i - 1], steps[i], values[i - 1], values[i]
    return v0 + (v1 - v0) * (step - s0) / (s1 - s0)
