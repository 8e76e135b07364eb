"""Runs (home): the history as a table; open, clone, stop, delete, compare; presets one key away."""

from __future__ import annotations


from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input, Static

from tuitune.formatting import fmt_duration, fmt_metric, fmt_time, short
from tuitune.records import RunRecord
from tuitune.screens import messages
from tuitune.screens.base import PolledScreen, cursor_row_id
from tuitune.screens.dialogs import ConfirmDialog
from tuitune.errors import TuituneError

COLUMNS = [("id", "id"), ("status", "status"), ("model", "model"), ("method", "method"), ("metric", "main metric"),
           ("dataset", "dataset"), ("task", "task"), ("started", "started"), ("dur", "duration")]
SORTS = ["id", "status", "model", "metric"]


class RunsScreen(PolledScreen):
    BINDINGS = [
        Binding("enter", "open", "Open", show=True, priority=False),
        Binding("n", "new", "New"),
        Binding("p", "presets", "Presets"),
        Binding("c", "clone", "Clone"),
        Binding("s", "stop", "Stop"),
        Binding("d", "delete", "Delete"),
        Binding("i", "predict", "Predict"),
        Binding("space", "mark", "Mark", key_display="␣"),
        Binding("v", "compare", "Compare"),
        Binding("o", "sort", "Sort"),
        Binding("w", "sweeps", "Sweeps", show=False),  # named in the hint once a sweep exists
        Binding("slash", "filter", "Filter"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[RunRecord] = []
        self.marked: set[int] = set()
        self.sort_by = "id"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="/ filter: text or status (running, completed…)", id="filter")
        table = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static("", id="runs-hint")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.start_polling("#runs")

    def on_screen_resume(self) -> None:
        self.reload()

    # -- data ------------------------------------------------------------------------------------
    def _read(self) -> list[RunRecord]:
        return self.tuitune.store.runs()

    def _row(self, r: RunRecord) -> list[str]:
        mark = "●" if r.id in self.marked else " "
        return [f"{mark}{r.id}", r.status, short(r.model, 14), r.method or "", fmt_metric(r),
                short(r.dataset, 14), r.task or "", fmt_time(r.started_at or r.created_at), fmt_duration(r)]

    def _visible(self) -> list[RunRecord]:
        text = self.query_one("#filter", Input).value.strip().lower()
        rows = [r for r in self.runs if not text or text in " ".join(self._row(r)).lower()
                or text in (r.name or "").lower()]
        key = {"id": lambda r: -r.id, "status": lambda r: (r.status, -r.id),
               "model": lambda r: (r.model or "", -r.id),
               "metric": lambda r: (r.main_value is None, -(r.main_value or 0))}[self.sort_by]
        return sorted(rows, key=key)

    def _show(self, runs: list[RunRecord]) -> None:
        self.runs = runs
        table = self.query_one("#runs", DataTable)
        current = self.current_id()
        table.clear()
        visible = self._visible()
        for r in visible:
            table.add_row(*self._row(r), key=str(r.id))
        if current is not None:
            for i, r in enumerate(visible):
                if r.id == current:
                    table.move_cursor(row=i, animate=False)
        hint = self.query_one("#runs-hint", Static)
        if not runs:
            hint.update("No runs yet. n: new run (pick a model)   p: start from a preset")
        else:
            live = sum(1 for r in runs if r.live)
            sweeps = " · w: sweeps" if any(r.sweep for r in runs) else ""
            hint.update(f"{len(visible)} of {len(runs)} runs, {live} live · sort: {self.sort_by}{sweeps}"
                        + (f" · marked: {', '.join(map(str, sorted(self.marked)))}" if self.marked else ""))

    def current_id(self) -> int | None:
        return cursor_row_id(self.query_one("#runs", DataTable))

    def current(self) -> RunRecord | None:
        rid = self.current_id()
        return next((r for r in self.runs if r.id == rid), None)

    # -- actions ---------------------------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        self._show(self.runs)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#runs", DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_sort(self) -> None:
        self.sort_by = SORTS[(SORTS.index(self.sort_by) + 1) % len(SORTS)]
        self._show(self.runs)

    def action_open(self) -> None:
        run = self.current()
        if run is not None:
            self.post_message(messages.OpenRun(run.id))

    def action_new(self) -> None:
        self.post_message(messages.NewRun({}))

    def action_presets(self) -> None:
        self.post_message(messages.PickPreset())

    def action_clone(self) -> None:
        run = self.current()
        if run is None:
            return
        from tuitune.config import clone_config

        try:
            cfg = clone_config(run.config)
        except TuituneError as err:
            self.tuitune.show_error(str(err))
            return
        self.post_message(messages.NewRun(cfg))

    def action_stop(self) -> None:
        run = self.current()
        if run is None:
            return
        if not run.live:
            self.tuitune.show_error(f"run {run.id} is {run.status}: only a live run can be stopped")
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._stop(run.id)

        self.app.push_screen(ConfirmDialog(f"Stop run {run.id} ({run.name})? It saves a checkpoint and "
                                           "ends as stopped."), answer)

    @work(thread=True, exit_on_error=False, group="change")
    def _stop(self, run_id: int) -> None:
        self.tuitune.store.stop(run_id)
        self.app.call_from_thread(self.notify, f"run {run_id}: stop requested")
        self.app.call_from_thread(self.reload)

    def action_delete(self) -> None:
        run = self.current()
        if run is None:
            return
        if run.live:
            self.tuitune.show_error(f"run {run.id} is {run.status}: stop it first (s)")
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._delete(run.id)

        self.app.push_screen(ConfirmDialog(f"Delete run {run.id} ({run.name}, {run.status}) "
                                           "and its files? This cannot be undone."), answer)

    @work(thread=True, exit_on_error=False, group="change")
    def _delete(self, run_id: int) -> None:
        self.tuitune.store.delete(run_id)
        self.marked.discard(run_id)
        self.app.call_from_thread(self.notify, f"deleted run {run_id}")
        self.app.call_from_thread(self.reload)

    def action_predict(self) -> None:
        run = self.current()
        if run is None:
            return
        if run.status != "completed":
            self.tuitune.show_error(f"run {run.id} is {run.status}: predict needs a completed run")
            return
        self.post_message(messages.PredictRun(run.id))

    def action_mark(self) -> None:
        rid = self.current_id()
        if rid is None:
            return
        self.marked ^= {rid}
        self._show(self.runs)

    def action_compare(self) -> None:
        ids = sorted(self.marked)
        if len(ids) < 2:
            self.tuitune.show_error("mark two or more runs with space, then press v to compare them")
            return
        self.post_message(messages.CompareRuns(ids))

    def action_sweeps(self) -> None:
        """The sweep of the run under the cursor (a trial), else the list of sweeps."""
        run = self.current()
        self.post_message(messages.OpenSweep(run.sweep if run else None))
