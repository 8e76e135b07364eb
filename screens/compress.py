"""Compress: a run's model quantized, pruned and clustered side by side (size, speed, quality).

Opened from a run's view (key `c`). The variants are built and measured by a
`python -m tuitune.engine compress` process started from a worker; its progress lines feed the status
line, and the table reads the history's `compressions` rows (the same rows `tuitune compress` prints).
"""

from __future__ import annotations

import re
from typing import Any, Optional

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, ProgressBar, Static

from tuitune.records import RunRecord
from tuitune.compress_cli import BASELINE, ORDER, describe, table_rows
from tuitune.screens.base import PolledScreen, explain

RECOVER_CHOICES = (0, 20, 50, 100)
STEP = re.compile(r"compress (\d+)/(\d+)")


class CompressScreen(PolledScreen):
    BINDINGS = [
        Binding("r", "run_all", "Run all"),
        Binding("enter", "run_one", "Run selected"),
        Binding("t", "recover", "Recover steps"),
        Binding("escape,q", "leave", "Back"),
    ]

    def __init__(self, run_id: int):
        super().__init__()
        self.run_id = run_id
        self.run_task: Optional[str] = None
        self.run_status: Optional[str] = None
        self.rows: list[dict[str, Any]] = []
        self.recover_steps = 0
        self.running = False
        self.progress_text = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"run {self.run_id} · compress", id="cx-title")
        yield DataTable(id="cx-table", cursor_type="row", zebra_stripes=True)
        yield ProgressBar(total=None, show_eta=False, id="cx-progress")
        yield Static("", id="cx-status", markup=False)
        yield Static("", id="cx-detail", markup=False)
        yield Footer(compact=True, show_command_palette=False)

    poll_every = 1.0  # a compress in progress writes its rows as they come

    def on_mount(self) -> None:
        self.query_one("#cx-progress", ProgressBar).display = False  # shown once a compress starts
        self.start_polling("#cx-table")

    # -- reading the history ---------------------------------------------------------------------
    def _read(self) -> tuple[RunRecord, list[dict[str, Any]]]:
        store = self.tuitune.store
        return store.run(self.run_id), store.compressions(self.run_id)

    def _show(self, data: tuple[RunRecord, list[dict[str, Any]]]) -> None:
        run, rows = data
        self.run_task = run.task
        self.run_status = run.status
        self.rows = rows
        by = {r["variant"]: r for r in rows}
        shown = [by.get(v) or {"variant": v, "status": "not run", "reason": ""} for v in ORDER]
        headers, cells = table_rows(shown, self.run_task, compact=True)
        table = self.query_one("#cx-table", DataTable)
        cursor = table.cursor_row
        if len(table.columns) != len(headers):
            table.clear(columns=True)
            for h in headers:
                table.add_column(h)
        table.clear()
        for c in cells:
            if c[1].startswith(("failed", "interrupted", "not run", "pending", "building", "measuring")):
                c = [c[0], c[1].split(":")[0]] + [""] * (len(c) - 2)  # the reason shows below the table
            table.add_row(*c, key=c[0])
        if cursor is not None and 0 <= cursor < table.row_count:
            table.move_cursor(row=cursor)
        title = (f"run {self.run_id} · {run.name or ''} · recover steps {self.recover_steps} · "
                 + ("running…" if self.running else "enter: run selected"))
        self.query_one("#cx-title", Static).update(escape(title))
        self._detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_run_one()  # enter on the focused table

    def _selected(self) -> str:
        table = self.query_one("#cx-table", DataTable)
        row = table.cursor_row if table.row_count else 0
        return ORDER[row] if 0 <= row < len(ORDER) else ORDER[0]

    def _detail(self) -> None:
        v = self._selected()
        r = next((x for x in self.rows if x["variant"] == v), None)
        text = f"{v}: {describe(v)}"
        if r and r.get("reason"):
            text += f"\n{r['status']}: {r['reason']}"
        elif r and r["status"] == "done":
            q = ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
            text += f"\np95 {r['latency_p95_ms']:.1f} ms · {q}"
        self.query_one("#cx-detail", Static).update(text)

    # -- running -----------------------------------------------------------------------------------
    def action_run_all(self) -> None:
        self._start([])

    def action_run_one(self) -> None:
        v = self._selected()
        self._start([] if v == BASELINE else [v])

    def action_recover(self) -> None:
        i = RECOVER_CHOICES.index(self.recover_steps) if self.recover_steps in RECOVER_CHOICES else 0
        self.recover_steps = RECOVER_CHOICES[(i + 1) % len(RECOVER_CHOICES)]
        self.notify(f"recovery fine-tune after pruning/clustering: {self.recover_steps} steps")
        self.reload()

    def _start(self, variants: list[str]) -> None:
        if self.running:
            self.tuitune.show_error("a compress is already running for this run: wait for it to finish")
            return
        if self.run_status not in (None, "completed"):
            self.tuitune.show_error(f"run {self.run_id} is {self.run_status}: compress needs a completed run")
            return
        self.running = True
        bar = self.query_one("#cx-progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        self._set_status("starting the engine (loading the model and the evaluation split)…")
        self._compress(variants, self.recover_steps)

    @work(thread=True, exclusive=True, exit_on_error=False, group="cmp-run")
    def _compress(self, variants: list[str], recover_steps: int) -> None:
        try:
            self.tuitune.store.compress(self.run_id, variants, recover_steps,
                                        lambda msg: self.app.call_from_thread(self._set_status, msg))
            self.app.call_from_thread(self._finished, "")
        except Exception as err:  # noqa: BLE001 - one line in a dialog
            self.app.call_from_thread(self._finished, explain(err))

    def _set_status(self, msg: str) -> None:
        self.progress_text = msg
        self.query_one("#cx-status", Static).update(msg)
        m = STEP.search(msg)
        if m:
            i, n = int(m.group(1)), int(m.group(2))
            self.query_one("#cx-progress", ProgressBar).update(total=n, progress=i - 1)
        self.reload()

    def _finished(self, error: str) -> None:
        self.running = False
        bar = self.query_one("#cx-progress", ProgressBar)
        bar.update(total=1, progress=1)
        self.reload()
        if error:
            self._set_status(f"compress failed: {error}")
            self.tuitune.show_error(error)
        else:
            self._set_status("compress finished: the table holds every variant measured for this run")
