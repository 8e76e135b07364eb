"""Sweeps: the list of sweeps, and one sweep's live leaderboard, best-so-far curve and Optuna's
parameter importances; enter opens a trial's run (monitor or replay).

Reads go through `tuitune.sweep` (which imports Optuna) in worker threads, so opening the UI
never loads Optuna; the first sweep view does, in the background.
"""

from __future__ import annotations

from typing import Any, Optional

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Static
from textual_plotext import PlotextPlot

from tuitune.formatting import fmt_value
from tuitune.screens import messages
from tuitune.screens.base import BaseScreen, PolledScreen, cursor_row_id


def _dur(s: Optional[float]) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 60}:{s % 60:02d}"


def load_summary(h, name: str) -> dict[str, Any]:
    from tuitune import sweep

    url = sweep.storage_of(h, name)
    study, d = sweep.load_study(name, url)
    s = sweep.summary(study, d, url)
    s["running"] = sweep.driver_alive(h, name) is not None
    return s


def importance_lines(imp: dict[str, float], width: int = 8) -> list[str]:
    if not imp:
        return ["importance: after three", "completed trials"]
    out = ["importance"]
    for key, v in imp.items():
        bar = "█" * max(1, round(v * width))
        out.append(f"{key.split('.')[-1][:12]:12s} {bar} {v:.2f}")
    return out


class SweepScreen(PolledScreen):
    """One sweep, live: a timer re-reads the study (a worker; one read at a time)."""

    BINDINGS = [
        Binding("enter", "open", "Open run", show=True, priority=False),
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q", "app.pop_screen", "Back", show=False),
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.sweep_name = name
        self.summary: Optional[dict[str, Any]] = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"sweep {self.sweep_name}: loading…", id="sw-title")
        with Horizontal(id="sw-body"):
            yield DataTable(id="sw-table", cursor_type="row", zebra_stripes=True)
            with Vertical(id="sw-side"):
                yield PlotextPlot(id="sw-curve")
                yield Static("", id="sw-importance")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.start_polling("#sw-table")

    def _read(self) -> dict[str, Any]:
        return load_summary(self.tuitune.store.h, self.sweep_name)

    def _show(self, s: dict[str, Any]) -> None:
        self.summary = s
        best = s["best"]
        # Two lines that fit 80 columns: the sweep and its progress, then the best trial so far.
        state = "running" if s.get("running") else "idle"
        title = f"sweep {s['name']} · {state} · {s['finished']}/{s['budget']} trials · {s['sampler']}"
        title = title if len(title) <= 78 else title[:77] + "…"
        goal = f"{'max' if s['direction'] == 'maximize' else 'min'} {s['metric']}"
        if best:
            params = " ".join(f"{k.split('.')[-1]}={fmt_value(v)}" for k, v in best["params"].items())
            line = f"best {best['value']:.4f}: trial {best['trial']} (run {best['run_id']}) · {goal} · {params}"
            title += "\n" + (line if len(line) <= 78 else line[:77] + "…")  # the leaderboard has them all
        else:
            title += f"\nbest: none yet · {goal}"
        self.query_one("#sw-title", Static).update(title)
        table = self.query_one("#sw-table", DataTable)
        keys = list(s["params"])
        current = self.current_trial()
        table.clear(columns=True)
        table.add_columns("#", "status", *[k.split(".")[-1][:9] for k in keys], s["metric"][:8], "time")
        for r in s["trials"]:
            value = r["value"] if r["value"] is not None else r.get("last")
            table.add_row(str(r["trial"]), r["state"], *[fmt_value(r["params"].get(k)) for k in keys], fmt_value(value),
                          _dur(r["duration_s"]), key=str(r["trial"]))
        if current is not None:
            for i, r in enumerate(s["trials"]):
                if r["trial"] == current:
                    table.move_cursor(row=i, animate=False)
        self._draw_curve(s["best_so_far"], s["metric"])
        self.query_one("#sw-importance", Static).update("\n".join(importance_lines(s["importances"])))

    def _draw_curve(self, curve: list, metric: str) -> None:
        """The best value so far after each completed trial (a step line)."""
        plot = self.query_one("#sw-curve", PlotextPlot)
        plt = plot.plt
        plt.clear_figure()
        plt.title(f"best {metric}")
        if curve:
            xs, ys = [n for n, _ in curve], [v for _, v in curve]
            plt.plot(xs, ys, marker="braille")
            plt.xlabel("trial")
            # One point alone would get an axis around nothing: frame it with the trial budget and a
            # little room above and below the values.
            plt.xlim(0, max(xs[-1], (self.summary or {}).get("budget", 1) - 1, 1))
            lo, hi = min(ys), max(ys)
            pad = (hi - lo) * 0.1 or abs(hi) * 0.05 or 0.05
            plt.ylim(lo - pad, hi + pad)
        plot.refresh()

    def current_trial(self) -> Optional[int]:
        return cursor_row_id(self.query_one("#sw-table", DataTable))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        n = self.current_trial()
        if n is None or self.summary is None:
            return
        row = next((r for r in self.summary["trials"] if r["trial"] == n), None)
        if row is None or row["run_id"] is None:
            why = row.get("error") if row else None
            self.tuitune.show_error(f"trial {n} has no run on this machine" + (f": {why}" if why else ""))
            return
        try:
            run = self.tuitune.store.run(row["run_id"])
        except Exception:
            run = None
        if run is None or run.sweep != self.sweep_name:
            self.tuitune.show_error(f"run {row['run_id']} of trial {n} is in another machine's history "
                                    f"(host {row.get('host')})")
            return
        self.post_message(messages.OpenRun(row["run_id"]))


class SweepsScreen(BaseScreen):
    """Every sweep this machine knows; enter opens one."""

    BINDINGS = [
        Binding("enter", "open", "Open", show=True, priority=False),
        Binding("escape", "app.pop_screen", "Back"),
        Binding("q", "app.pop_screen", "Back", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Sweeps (`tuitune sweep PRESET --param KEY=SPEC` starts one)", id="sw-title")
        table = DataTable(id="sweeps", cursor_type="row", zebra_stripes=True)
        table.add_columns("sweep", "trials", "metric", "best", "run", "refines")
        yield table
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#sweeps", DataTable).focus()
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="sweeps")
    def _load(self) -> None:
        from tuitune import sweep

        h = self.tuitune.store.h
        rows = []
        for row in sweep.known_sweeps(h):
            try:
                s = load_summary(h, row["name"])
                rows.append([row["name"], f"{s['finished']}/{s['budget']}", s["metric"],
                             fmt_value((s["best"] or {}).get("value")), fmt_value((s["best"] or {}).get("run_id")),
                             row["parent"] or ""])
            except Exception as err:  # noqa: BLE001 - one unreachable storage must not hide the rest
                rows.append([row["name"], "?", "?", "?", "?", str(err)[:30]])
        self.app.call_from_thread(self._show, rows)

    def _show(self, rows: list[list[str]]) -> None:
        table = self.query_one("#sweeps", DataTable)
        table.clear()
        self.names = [r[0] for r in rows]
        for r in rows:
            table.add_row(*r, key=r[0])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        table = self.query_one("#sweeps", DataTable)
        if not table.row_count:
            return
        self.post_message(messages.OpenSweep(self.names[table.cursor_row]))
