"""Monitor (a live run) and Replay (a finished one): the same view over the same history reads.

A timer asks a worker for what is new since the last read (`metrics(after_rowid=)`, system
samples after a time, the log tail); one read answers with everything new at once, and a new read
starts only when the last one has been drawn, so a fast producer is coalesced into one redraw per
tick, never queued. The chart is downsampled to `MAX_POINTS`. Arrow keys scrub through steps.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Any, Optional

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, ProgressBar, Static
from textual_plotext import PlotextPlot

from tuitune.formatting import eta_seconds, fmt_bytes, fmt_clock, fmt_duration, real_metrics, short
from tuitune.records import EvalRecord, RunRecord
from tuitune.screens import messages
from tuitune.screens.base import BaseScreen
from tuitune.screens.dialogs import ConfirmDialog

MAX_POINTS = 1000
SHOWN = [("train/learning_rate", "lr", "{:.2e}"), ("train/grad_norm", "grad norm", "{:.3g}"),
         ("train/samples_per_second", "samples/s", "{:.1f}"), ("train/tokens_per_second", "tokens/s", "{:.0f}"),
         ("train/epoch", "epoch", "{:.2f}")]


def downsample(xs: list, ys: list, n: int = MAX_POINTS) -> tuple[list, list]:
    """Every k-th point (and always the last), so a long run draws as fast as a short one."""
    if len(xs) <= n:
        return xs, ys
    k = -(-len(xs) // n)
    idx = list(range(0, len(xs), k))
    if idx[-1] != len(xs) - 1:
        idx.append(len(xs) - 1)
    return [xs[i] for i in idx], [ys[i] for i in idx]


class RunTimeline:
    """Everything read so far about one run, by metric key, in step order."""

    def __init__(self) -> None:
        self.series: dict[str, tuple[list[int], list[float]]] = {}
        self.last_rowid = 0
        self.system: list[dict[str, Any]] = []
        self.evals: list[EvalRecord] = []

    def add_metrics(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            steps, values = self.series.setdefault(r["key"], ([], []))
            steps.append(r["step"])
            values.append(r["value"])
            self.last_rowid = max(self.last_rowid, r["rowid"])

    def steps(self) -> list[int]:
        return sorted({s for steps, _ in self.series.values() for s in steps})

    def at(self, key: str, step: Optional[int]) -> Optional[float]:
        if key not in self.series:
            return None
        steps, values = self.series[key]
        if step is None:
            return values[-1] if values else None
        i = bisect.bisect_right(steps, step) - 1
        return values[i] if i >= 0 else None

    def system_at(self, step: Optional[int]) -> Optional[dict[str, Any]]:
        if not self.system:
            return None
        if step is None:
            return self.system[-1]
        best = None
        for s in self.system:
            if s.get("step") is not None and s["step"] <= step:
                best = s
        return best or self.system[0]

    def eval_at(self, step: Optional[int]) -> Optional[EvalRecord]:
        found = None
        for e in self.evals:
            if step is None or e.step <= step:
                found = e
        return found

    def baseline(self) -> Optional[EvalRecord]:
        return next((e for e in self.evals if e.phase == "baseline"), None)


def draw_loss(plot: PlotextPlot, lines: list[tuple[str, list, list]], *, hline: Optional[float] = None,
              vline: Optional[int] = None, title: str = "loss") -> None:
    plt = plot.plt
    plt.clear_figure()
    plt.title(title)
    drawn = False
    for label, xs, ys in lines:
        if xs:
            xs2, ys2 = downsample(xs, ys)
            plt.plot(xs2, ys2, label=label, marker="braille")
            drawn = True
    if hline is not None:
        plt.hline(hline, "gray")
    if vline is not None and drawn:
        plt.vline(vline, "red")
    plot.refresh()


def system_lines(sample: Optional[dict[str, Any]]) -> list[str]:
    if not sample:
        return ["CPU N/A  RAM N/A", "GPU N/A"]
    cpu = sample.get("cpu_percent")
    ram = f"{fmt_bytes(sample.get('ram_used'))}/{fmt_bytes(sample.get('ram_total'))}" \
        if sample.get("ram_used") is not None else "N/A"
    out = [f"CPU {'N/A' if cpu is None else f'{cpu:.0f}%'}  RAM {ram}"]
    gpus = sample.get("gpus") or []
    if not gpus:
        out.append("GPU N/A")
    for g in gpus:
        na = lambda v, f="{}": "N/A" if v is None else f.format(v)  # noqa: E731
        mem = (f"{fmt_bytes(g.get('mem_used'))}/{fmt_bytes(g.get('mem_total'))}"
               if g.get("mem_used") is not None else "N/A")
        out.append(f"GPU{g.get('index', 0)} {na(g.get('util'), '{}%')} {mem} "
                   f"{na(g.get('temp'), '{}°C')} {na(g.get('power_w'), '{:.0f}W')}")
    return out


class MonitorScreen(BaseScreen):
    BINDINGS = [
        Binding("s", "stop", "Stop run"),
        Binding("escape,q", "leave", "Leave"),
        Binding("left", "scrub(-1)", "◀ step"),
        Binding("right", "scrub(1)", "step ▶"),
        Binding("shift+left,pageup", "scrub(-10)", "◀◀", show=False),
        Binding("shift+right,pagedown", "scrub(10)", "▶▶", show=False),
        Binding("home", "scrub_to(0)", "first", show=False),
        Binding("end", "follow", "Latest"),
        Binding("i", "predict", "Predict"),
        Binding("v", "evaluation", "Eval detail"),
        Binding("l", "raw_log", "Raw log"),
        Binding("c", "compress", "Compress"),
    ]

    def __init__(self, run_id: int):
        super().__init__()
        self.run_id = run_id
        self.run: Optional[RunRecord] = None  # None until the first read
        self.tl = RunTimeline()
        self.cursor: Optional[int] = None  # index into steps; None follows the latest
        self._busy = False
        self._done = False
        self.log_lines: list[str] = []  # the raw engine.log tail (on the `l` key)
        self.events: list[dict[str, Any]] = []
        self.recent_rows: deque[dict[str, Any]] = deque(maxlen=400)  # metric rows for the tidy log
        self.raw_log = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"run {self.run_id}: loading…", id="mon-title")
        yield ProgressBar(total=None, show_eta=False, id="mon-progress")
        with Horizontal(id="mon-body"):
            yield PlotextPlot(id="loss-chart")
            with Vertical(id="mon-side"):
                yield Static("", id="mon-metrics")
                yield Static("", id="mon-eval")
                yield Static("", id="mon-system")
        yield Static("", id="mon-log", markup=False)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self._tick()
        self._timer = self.set_interval(self.tuitune.poll_s, self._tick)

    # -- reading ---------------------------------------------------------------------------------
    def _tick(self) -> None:
        if self._busy or self._done:
            return
        self._busy = True
        self._poll(self.tl.last_rowid, self.tl.system[-1]["time"] if self.tl.system else 0)

    @work(thread=True, exclusive=True, exit_on_error=False, group="poll")
    def _poll(self, after_rowid: int, after_time: int) -> None:
        store = self.tuitune.store
        try:
            run = store.run(self.run_id)
            data = {
                "events": store.events(self.run_id, self.events[-1]["id"] if self.events else 0),
                "run": run,
                "metrics": store.metrics(self.run_id, after_rowid),
                "evals": store.evaluations(self.run_id),
                "system": store.system(self.run_id, after_time),
                "log": store.log_tail(run, 6),
            }
        except Exception:
            self._busy = False
            raise
        self.app.call_from_thread(self._apply, data)

    def _apply(self, data: dict[str, Any]) -> None:
        try:
            before = self.run.status if self.run else None
            was_live = self.run is not None and self.run.live
            self.run = data["run"]
            self.tl.add_metrics(data["metrics"])
            self.tl.evals = data["evals"]
            self.tl.system.extend(data["system"])
            self.log_lines = data["log"]
            self.events.extend(data["events"])
            self.recent_rows.extend(data["metrics"])
            if self.run.status != before:
                self.refresh_bindings()  # "s Stop run" only while it is live, "i Predict" once completed
            if not self.run.live:
                self._done = True  # everything is read: a replay from here on
                self._timer.stop()
                if was_live:  # it ended while watched (opening a finished run is no news)
                    self.tuitune.run_ended(self.run)
            self._draw()
        finally:
            self._busy = False

    # -- drawing ---------------------------------------------------------------------------------
    def _step(self) -> Optional[int]:
        steps = self.tl.steps()
        if self.cursor is None or not steps:
            return None
        return steps[max(0, min(self.cursor, len(steps) - 1))]

    def _draw(self) -> None:
        run, tl = self.run, self.tl
        if run is None:
            return
        step = self._step()
        cur, total = run.step or 0, run.max_steps or 0
        left = eta_seconds(run) if run.live else None
        if left is not None:
            eta = f"ETA {fmt_clock(left)}"
        elif run.live:
            eta = "starting…" if not cur else ""
        else:
            eta = f"took {fmt_duration(run)}"
        mode = f"replay @ step {step}" if step is not None else ("live" if run.live else "replay: ←/→ scrub")
        title = (f"[b]run {run.id}[/b] {escape(short(run.name, 18))} · {run.status} · "
                 f"step {cur}/{total or '?'} · {eta} · {mode}")
        if run.error:
            title += f"\n[red]{escape(run.error[:150])}[/red]"
        self.query_one("#mon-title", Static).update(title)
        bar = self.query_one("#mon-progress", ProgressBar)
        if total:
            bar.update(total=total, progress=step if step is not None else cur)

        lines = [("train", *tl.series.get("train/loss", ([], []))),
                 ("eval", *tl.series.get("eval/loss", ([], [])))]
        base = tl.baseline()
        base_loss = base.metrics.get("eval_loss") if base else None
        draw_loss(self.query_one("#loss-chart", PlotextPlot), [(lab, list(x), list(y)) for lab, x, y in lines],
                  hline=base_loss, vline=step,
                  title="loss (train, eval" + (", ─ baseline)" if base_loss is not None else ")"))

        m = [f"loss      {self._v('train/loss', step, '{:.4f}')}"]
        for key, label, f in SHOWN:
            m.append(f"{label:9s} {self._v(key, step, f)}")
        self.query_one("#mon-metrics", Static).update("\n".join(m))

        ev = tl.eval_at(step)
        e_lines = []
        if base:
            e_lines.append("baseline " + self._eval_text(base.metrics))
        if ev and ev is not base:
            e_lines.append(f"{ev.phase} @{ev.step} " + self._eval_text(ev.metrics))
        self.query_one("#mon-eval", Static).update("\n".join(e_lines) or "eval: none yet")
        self.query_one("#mon-system", Static).update("\n".join(system_lines(tl.system_at(step))))
        self.query_one("#mon-log", Static).update(self._log_text())

    def _log_text(self) -> str:
        """Tidy: events and formatted per-step metrics from the history; raw: engine.log's tail."""
        if self.raw_log:
            return "\n".join(["engine.log (l: back to the tidy log)"] + [ln[-200:] for ln in self.log_lines[-3:]])
        from tuitune.tidylog import tidy

        return "\n".join(tidy(self.events, self.recent_rows, 4)) or "(nothing logged yet)"

    def action_raw_log(self) -> None:
        self.raw_log = not self.raw_log
        self._draw()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":  # a replay has nothing to stop: no "s Stop run" in its footer
            return self.run is not None and self.run.live
        if action == "predict":
            return self.run is not None and self.run.status == "completed"
        return True

    def _v(self, key: str, step: Optional[int], f: str) -> str:
        v = self.tl.at(key, step)
        return "N/A" if v is None else f.format(v)

    @staticmethod
    def _eval_text(m: dict[str, Any]) -> str:
        keep = [(k.removeprefix("eval_"), v) for k, v in real_metrics(m).items()]
        return " ".join(f"{k} {v:.3g}" for k, v in keep[:3])

    # -- keys ------------------------------------------------------------------------------------
    def action_scrub(self, delta: int) -> None:
        n = len(self.tl.steps())
        if not n:
            return
        pos = n - 1 if self.cursor is None else self.cursor
        pos = max(0, min(n - 1, pos + delta))
        self.cursor = pos
        self._draw()

    def action_scrub_to(self, pos: int) -> None:
        if self.tl.steps():
            self.cursor = pos
            self._draw()

    def action_follow(self) -> None:
        self.cursor = None
        self._draw()

    def _status(self) -> str:
        return self.run.status if self.run else "loading"

    def action_stop(self) -> None:
        if self.run is None or not self.run.live:
            self.tuitune.show_error(f"run {self.run_id} is {self._status()}: nothing to stop")
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._stop()

        self.app.push_screen(ConfirmDialog(f"Stop run {self.run_id}? It saves a checkpoint and ends as stopped."),
                             answer)

    @work(thread=True, exit_on_error=False, group="stop")
    def _stop(self) -> None:
        self.tuitune.store.stop(self.run_id)
        self.app.call_from_thread(self.notify, f"run {self.run_id}: stop requested")

    def action_evaluation(self) -> None:
        """The evaluations in depth, at the step shown (live: the latest)."""
        self.post_message(messages.OpenEvaluation(self.run_id, self._step()))

    def action_predict(self) -> None:
        if self._status() != "completed":
            self.tuitune.show_error(f"run {self.run_id} is {self._status()}: predict needs a completed run")
            return
        self.post_message(messages.PredictRun(self.run_id))

    def action_compress(self) -> None:
        if self._status() != "completed":
            self.tuitune.show_error(f"run {self.run_id} is {self._status()}: compress needs a completed run")
            return
        self.post_message(messages.CompressRun(self.run_id))


class CompareScreen(BaseScreen):
    """Two or more runs: the trade-off table (`tuitune.compare`, the same as `tuitune compare`), the
    curves overlaid with the x-axis as step, epoch or wall time, and the config differences."""

    BINDINGS = [Binding("escape,q", "leave", "Back"), Binding("x", "x_axis", "x: step/epoch/time"),
                Binding("e", "toggle_eval", "Train/eval loss")]

    def __init__(self, run_ids: list[int]):
        super().__init__()
        self.run_ids = run_ids
        self.data: Optional[dict[str, Any]] = None  # tuitune.compare.compare()
        self.metrics: dict[int, list[dict[str, Any]]] = {}
        self.starts: dict[int, Optional[int]] = {}
        self.key = "train/loss"
        self.x = "step"

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="cmp-body"):
            yield Static(f"comparing runs {', '.join(map(str, self.run_ids))}: loading…", id="cmp-table",
                         markup=False)
            yield PlotextPlot(id="cmp-chart")
            yield Static("", id="cmp-diff", markup=False)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def _load(self) -> None:
        from tuitune.compare import compare

        store = self.tuitune.store
        data = compare(store.h, self.run_ids)
        metrics = {rid: store.metrics(rid) for rid in self.run_ids}
        starts = {rid: store.run(rid).started_at for rid in self.run_ids}
        self.app.call_from_thread(self._show, data, metrics, starts)

    def _show(self, data, metrics, starts) -> None:
        self.data, self.metrics, self.starts = data, metrics, starts
        self._draw()

    def _draw(self) -> None:
        from tuitune.compare import curve, fmt_value, format_table, table_rows
        from tuitune.formatting import short

        if self.data is None:
            return
        width = max(40, self.size.width - 2)
        self.query_one("#cmp-table", Static).update(format_table(table_rows(self.data), width=width))
        lines = []
        for r in self.data["runs"]:
            xs, ys = curve(self.metrics.get(r["id"], []), self.key, self.x, start_ms=self.starts.get(r["id"]))
            lines.append((f"{r['id']} {r['method']}", xs, ys))
        x_name = {"step": "step", "epoch": "epoch", "time": "seconds"}[self.x]
        draw_loss(self.query_one("#cmp-chart", PlotextPlot), lines, title=f"{self.key} by {x_name} (x: change)")
        diff = self.data["config_diff"]
        if not diff:
            self.query_one("#cmp-diff", Static).update("configs are identical")
            return
        rows = [["config differences"] + [f"run {r['id']}" for r in self.data["runs"]]]
        # values cut from the left, like the CLI's: names differ at their end (…-sweep-t2, …-t3)
        room = max(8, (width - width // 2 - 2 * len(self.data["runs"])) // len(self.data["runs"]))
        rows += [[d["key"]] + [short(fmt_value(v), room) for v in d["values"]] for d in diff]
        self.query_one("#cmp-diff", Static).update(format_table(rows, width=width, label_max=width // 2))

    def on_resize(self) -> None:
        self._draw()

    def action_x_axis(self) -> None:
        from tuitune.compare import X_AXES

        self.x = X_AXES[(X_AXES.index(self.x) + 1) % len(X_AXES)]
        self._draw()

    def action_toggle_eval(self) -> None:
        self.key = "eval/loss" if self.key == "train/loss" else "train/loss"
        self._draw()
