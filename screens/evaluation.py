"""A run's evaluations in depth, live and in replay (the same reads): the confusion matrix as a
table of shaded counts, per-class F1 from the baseline to the chosen evaluation, the final
evaluation's misclassified rows (filtered by a matrix cell), probe answers step by step, and every
metric of the evaluation with what the run cost.

p/n choose the evaluation (baseline, each periodic one, final, test); Enter on a matrix cell lists
that cell's errors. Opened from the Monitor (`v`) at the step it shows.
"""

from __future__ import annotations

from typing import Any, Optional

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane

from tuitune.formatting import fmt_change, fmt_resources, probe_timeline, real_metrics, short
from tuitune.records import EvalRecord, RunRecord
from tuitune.screens.base import PolledScreen
from tuitune.tasks import TASKS

LABEL_W = 12  # row labels of the matrix
ERROR_TEXT_W = 200


def shade(count: int, row_total: int, diagonal: bool) -> str:
    """A background whose strength is the cell's share of its row (the true label's rows):
    green on the diagonal (right), red off it (wrong); empty cells stay plain."""
    if not count or not row_total:
        return ""
    share = count / row_total
    level = int(40 + 160 * share)
    return f"on rgb(0,{level},0)" if diagonal else f"on rgb({level},0,0)"


def head(label: str, width: int) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


class EvaluationScreen(PolledScreen):
    BINDINGS = [
        Binding("escape,q", "leave", "Back"),
        Binding("p", "pick(-1)", "◀ eval"),
        Binding("n", "pick(1)", "eval ▶"),
        Binding("end", "latest", "Latest", show=False),
        Binding("c", "clear_filter", "All errors"),
    ]

    def __init__(self, run_id: int, step: Optional[int] = None):
        super().__init__()
        self.run_id = run_id
        self.start_step = step
        self.run: Optional[RunRecord] = None
        self.evals: list[EvalRecord] = []
        self.depth: dict[str, Any] = {"reports": [], "confusions": [], "errors": [], "probes": []}
        self.index: Optional[int] = None  # chosen evaluation; None follows the latest
        self.cell: Optional[tuple[str, str]] = None  # (true, predicted) filter of the error list
        self._drawn_key: Any = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"run {self.run_id}: loading…", id="ev-title")
        with TabbedContent(id="ev-tabs"):
            with TabPane("Matrix", id="tab-matrix"):
                yield DataTable(id="ev-matrix", cursor_type="cell", zebra_stripes=False)
                yield Static("", id="ev-cell")
            with TabPane("Per class", id="tab-classes"):
                yield DataTable(id="ev-classes", cursor_type="row")
            with TabPane("Errors", id="tab-errors"):
                yield Static("", id="ev-filter")
                yield DataTable(id="ev-errors", cursor_type="row")
            with TabPane("Probes", id="tab-probes"):
                with VerticalScroll():
                    yield Static("", id="ev-probes")
            with TabPane("Metrics", id="tab-metrics"):
                with VerticalScroll():
                    yield Static("", id="ev-metrics")
        yield Footer(compact=True, show_command_palette=False)

    poll_every = 1.0  # a live run's new evaluations arrive on their own

    def on_mount(self) -> None:
        self.start_polling("#ev-matrix")

    # -- reading ----------------------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        store = self.tuitune.store
        return {"run": store.run(self.run_id), "evals": store.evaluations(self.run_id),
                "depth": store.evaluation_depth(self.run_id)}

    def _show(self, data: dict[str, Any]) -> None:
        self.run, self.evals, self.depth = data["run"], data["evals"], data["depth"]
        if self.index is None and self.start_step is not None and self.evals:
            at = [i for i, e in enumerate(self.evals) if e.step <= self.start_step]
            self.index = at[-1] if at else 0
            self.start_step = None
        if not self.run.live:
            self.stop_polling()
        self._draw()

    # -- choosing ---------------------------------------------------------------------------------
    def _chosen(self) -> Optional[int]:
        if not self.evals:
            return None
        return len(self.evals) - 1 if self.index is None else max(0, min(self.index, len(self.evals) - 1))

    def _report_for(self, e: EvalRecord) -> Optional[dict[str, dict]]:
        for phase, step, report in reversed(self.depth["reports"]):
            if phase == e.phase and step == e.step:
                return report
        return None

    def _confusion_for(self, e: EvalRecord) -> Optional[dict[str, Any]]:
        for c in reversed(self.depth["confusions"]):
            if c["phase"] == e.phase and c["step"] == e.step:
                return c
        return None

    # -- drawing ----------------------------------------------------------------------------------
    def _draw(self) -> None:
        run = self.run
        if run is None:
            return
        i = self._chosen()
        e = self.evals[i] if i is not None else None
        where = f"{e.phase} @ step {e.step} ({i + 1}/{len(self.evals)})" if e else "no evaluation yet"
        mode = "live" if run.live else "replay"
        self.query_one("#ev-title", Static).update(
            f"[b]run {run.id}[/b] {escape(short(run.name, 16))} · {run.task} · {where} · {mode} · p/n evaluation")
        key = (i, len(self.evals), len(self.depth["reports"]), len(self.depth["probes"]), len(self.depth["errors"]),
               self.cell, run.status)
        if key == self._drawn_key:
            return
        self._drawn_key = key
        self._draw_matrix(e)
        self._draw_classes(e)
        self._draw_errors()
        self._draw_probes(e)
        self._draw_metrics(e)

    def _draw_matrix(self, e: Optional[EvalRecord]) -> None:
        table = self.query_one("#ev-matrix", DataTable)
        cursor = table.cursor_coordinate
        table.clear(columns=True)
        cm = self._confusion_for(e) if e else None
        if not cm:
            self.query_one("#ev-cell", Static).update(self._no_report_text(e))
            return
        labels, matrix = cm["labels"], cm["matrix"]
        # as wide as 80 columns allow (10 labels: 4 characters each), never narrower than the counts
        digits = len(str(max((max(r) for r in matrix), default=0)))
        width = max(digits, min(12, (78 - LABEL_W - 2) // max(1, len(labels)) - 2))
        table.add_column("true \\ pred", key="true", width=LABEL_W)
        for j, lab in enumerate(labels):
            table.add_column(head(lab, width), key=f"p{j}", width=width)
        for r, (lab, row) in enumerate(zip(labels, matrix)):
            total = sum(row)
            cells = [Text(str(v).rjust(width), style=shade(v, total, r == c)) for c, v in enumerate(row)]
            table.add_row(Text(head(lab, LABEL_W), style="bold"), *cells, key=f"t{r}")
        if cursor.row < len(labels) and 0 < cursor.column <= len(labels):
            table.cursor_coordinate = cursor
        else:
            table.cursor_coordinate = (0, 1)
        self._describe_cell()

    def _no_report_text(self, e: Optional[EvalRecord]) -> str:
        if e is None:
            return "no evaluation yet"
        spec = TASKS.get(self.run.task or "") if self.run else None
        if spec is not None and not spec.class_report:
            return f"a {self.run.task} run has no classes: see Probes and Metrics"
        return f"no class report stored for {e.phase} @ step {e.step}"

    def _cell_at(self) -> Optional[tuple[str, str, int]]:
        e = self.evals[self._chosen()] if self.evals else None
        cm = self._confusion_for(e) if e else None
        if not cm:
            return None
        table = self.query_one("#ev-matrix", DataTable)
        r, c = table.cursor_coordinate.row, table.cursor_coordinate.column - 1
        if not (0 <= r < len(cm["labels"]) and 0 <= c < len(cm["labels"])):
            return None
        return cm["labels"][r], cm["labels"][c], cm["matrix"][r][c]

    def _describe_cell(self) -> None:
        cell = self._cell_at()
        out = self.query_one("#ev-cell", Static)
        if cell is None:
            out.update("rows: true label · columns: predicted · green: right, red: wrong (share of the row)")
            return
        t, p, n = cell
        what = "right" if t == p else "wrong"
        hint = " · Enter: list them (final evaluation)" if t != p and n else ""
        out.update(f"true [b]{escape(t)}[/b] → predicted [b]{escape(p)}[/b]: {n} rows ({what}){hint}")

    @on(DataTable.CellHighlighted, "#ev-matrix")
    def _cell_moved(self, event: DataTable.CellHighlighted) -> None:
        self._describe_cell()

    @on(DataTable.CellSelected, "#ev-matrix")
    def _cell_chosen(self, event: DataTable.CellSelected) -> None:
        cell = self._cell_at()
        if cell is None:
            return
        t, p, _ = cell
        if t == p:
            self.notify("the diagonal holds the right answers: pick a cell off it")
            return
        self.cell = (t, p)
        self._draw_errors()
        self.query_one("#ev-tabs", TabbedContent).active = "tab-errors"
        self.query_one("#ev-errors", DataTable).focus()

    def _draw_classes(self, e: Optional[EvalRecord]) -> None:
        table = self.query_one("#ev-classes", DataTable)
        table.clear(columns=True)
        report = self._report_for(e) if e else None
        if not report:
            return
        base = next((r for p, _, r in self.depth["reports"] if p == "baseline"), None)
        table.add_columns("label", "prec", "recall", "F1 baseline → here (change)", "support")
        for lab, r in report.items():
            b = base[lab]["f1"] if base and lab in base else None
            change = Text(fmt_change(b, r["f1"]))
            if b is not None:
                change.stylize("green" if r["f1"] > b else "red" if r["f1"] < b else "")
            table.add_row(head(lab, LABEL_W), f"{r['precision']:.3f}", f"{r['recall']:.3f}", change,
                          str(r["support"]))

    def _draw_errors(self) -> None:
        rows = self.depth["errors"]
        if self.cell:
            rows = [r for r in rows if (r["true_label"], r["pred_label"]) == self.cell]
        note = self.query_one("#ev-filter", Static)
        if self.cell:
            note.update(f"true [b]{escape(self.cell[0])}[/b] predicted [b]{escape(self.cell[1])}[/b]: "
                        f"{len(rows)} rows · c: all errors")
        elif self.depth["errors"]:
            note.update(f"{len(rows)} misclassified rows of the final evaluation, most confident first · "
                        "Enter on a matrix cell filters")
        else:
            note.update("no errors stored (stored after the final evaluation of a classification run)")
        table = self.query_one("#ev-errors", DataTable)
        table.clear(columns=True)
        table.add_columns("true", "predicted", "conf", "text")
        for r in rows:
            text = (r["text"] or "").replace("\n", " ")[:ERROR_TEXT_W]
            table.add_row(head(r["true_label"], 10), head(r["pred_label"], 10), f"{r['confidence']:.2f}", text)

    def _draw_probes(self, e: Optional[EvalRecord]) -> None:
        groups = probe_timeline(self.depth["probes"])
        if not groups:
            self.query_one("#ev-probes", Static).update("no probes (evaluation.probes)")
            return
        out = []
        for text, answers in groups:
            out.append(f"[b]{escape(text)}[/b]")
            previous = None
            for phase, step, answer in answers:
                one = escape(answer.replace("\n", " ")[:200])
                changed = "•" if previous is not None and answer != previous else " "
                line = f" {changed} {phase:8s} @{step:<5d} {one}"
                if e is not None and (phase, step) == (e.phase, e.step):
                    line = f"[reverse]{line}[/reverse]"
                out.append(line)
                previous = answer
        out.append("[dim]• the answer changed since the evaluation before[/dim]")
        self.query_one("#ev-probes", Static).update("\n".join(out))

    def _draw_metrics(self, e: Optional[EvalRecord]) -> None:
        lines = []
        if e is not None:
            lines.append(f"[b]{e.phase} @ step {e.step}[/b]")
            lines += [f"  {escape(k.removeprefix('eval_').removeprefix('test_')):28s} {v:.4g}"
                      for k, v in real_metrics(e.metrics).items()]
        if self.run is not None and not self.run.live and self.run.started_at:
            lines.append("")
            lines.append("cost: " + fmt_resources(self.run))
        self.query_one("#ev-metrics", Static).update("\n".join(lines) or "no evaluation yet")

    # -- keys -------------------------------------------------------------------------------------
    def action_pick(self, delta: int) -> None:
        i = self._chosen()
        if i is None:
            return
        self.index = max(0, min(len(self.evals) - 1, i + delta))
        self._draw()

    def action_latest(self) -> None:
        self.index = None
        self._draw()

    def action_clear_filter(self) -> None:
        self.cell = None
        self._draw_errors()
