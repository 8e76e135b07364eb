"""The Evaluation screen at 80×24, driven with Pilot over a seeded history: the confusion matrix
fits for 10 labels (and scrolls for more), Enter on a cell lists that cell's errors, per-class F1
baseline → final, probes step by step, live updates through the same reads."""

from __future__ import annotations

import asyncio
import os

import pytest

from tuitune import paths
from tuitune.app import make_app
from tuitune.history import History
from ui_helpers import wait_for

os.environ["TZ"] = "UTC"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _report(labels, matrix):
    out = {}
    for c, lab in enumerate(labels):
        tp, pred, sup = matrix[c][c], sum(r[c] for r in matrix), sum(matrix[c])
        out[lab] = {"precision": tp / pred if pred else 0.0, "recall": tp / sup if sup else 0.0,
                    "f1": 2 * tp / (pred + sup) if pred + sup else 0.0, "support": sup}
    return out


def seed(n_labels: int, *, status: str = "completed") -> tuple[int, list[str], list[list[int]]]:
    """A classification run with baseline, one periodic and a final evaluation; errors; probes."""
    labels = [f"class-{i}-{'x' * (i % 4)}" for i in range(n_labels)]
    h = History()
    cfg = {"name": "deep", "task": "classification", "model": {"name_or_path": "demo:minilm"},
           "data": {"path": "demo:bbc-news"}, "method": {"name": "full"}, "training": {"max_steps": 20}}
    rid = h.create_run(cfg, run_dir_for=paths.run_dir)
    h.update_run(rid, status=status, started_at=1_700_000_000_000, ended_at=1_700_000_060_000, max_steps=20,
                 step=20, wall_time_s=61.5, train_time_s=50.2, peak_ram_bytes=1_800_000_000, tokens_per_s=1234.0)
    paths.run_dir(rid).mkdir(parents=True, exist_ok=True)
    base = [[10 if j == 0 else 0 for j in range(n_labels)] for _ in range(n_labels)]  # says class 0 always
    final = [[100 + i if i == j else (i + j) % 3 for j in range(n_labels)] for i in range(n_labels)]
    for phase, step, m in (("baseline", 0, base), ("eval", 10, final), ("final", 20, final)):
        acc = sum(m[i][i] for i in range(n_labels)) / sum(map(sum, m))
        h.log_evaluation(rid, phase, step, {"eval_loss": 1.0 - acc / 2, "eval_accuracy": acc})
        h.log_class_report(rid, phase, step, labels, _report(labels, m), m)
        h.log_probes(rid, phase, step, [{"input": "good news for the markets", "answer": labels[0 if step < 10 else 1]}])
    errors = [{"row": k, "text": f"row {k} about {labels[i]}", "true_label": labels[i], "pred_label": labels[j],
               "confidence": 0.5 + k / 10000}
              for i in range(n_labels) for j in range(n_labels) if i != j for k in [i * 100 + j] * final[i][j]]
    for n, e in enumerate(errors):
        e["row"] = n
    h.log_errors(rid, "final", 20, errors)
    h.close()
    return rid, labels, final


def test_matrix_fits_80x24_and_a_cell_lists_its_errors(tuitune_home):
    rid, labels, final = seed(10)

    async def go():
        app = make_app(poll_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.3)
            await pilot.press("enter")  # the runs list opens the run (replay)
            await wait_for(pilot, lambda: type(app.screen).__name__ == "MonitorScreen" and app.screen._done,
                           what="replay")
            await pilot.press("v")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "EvaluationScreen" and app.screen._done,
                           what="evaluation screen")
            scr = app.screen
            table = scr.query_one("#ev-matrix")
            assert "final @ step 20 (3/3)" in str(scr.query_one("#ev-title").render())
            assert table.row_count == 10 and len(table.columns) == 11
            # the whole matrix is on screen: no horizontal scrolling needed at 80 columns
            await wait_for(pilot, lambda: table.virtual_size.width > 0, what="matrix laid out")
            assert 60 < table.virtual_size.width <= table.size.width <= 80
            assert table.region.bottom <= 23  # above the footer
            # shading: the diagonal green, a wrong cell red
            diag = table.get_cell_at((2, 3))
            off = next(table.get_cell_at((0, c + 1)) for c in range(10) if final[0][c] and c != 0)
            assert "rgb(0," in str(diag.style) and "rgb(" in str(off.style) and ",0,0)" in str(off.style)
            # move to row 1 (true class-1), column of class-0 (predicted) and press Enter
            t, p = 1, next(c for c in range(10) if c != 1 and final[1][c])
            table.cursor_coordinate = (t, p + 1)
            await pilot.pause(0.1)
            assert f"{final[t][p]} rows (wrong)" in str(scr.query_one("#ev-cell").render())
            await pilot.press("enter")
            await wait_for(pilot, lambda: scr.query_one("#ev-tabs").active == "tab-errors", what="errors tab")
            errors = scr.query_one("#ev-errors")
            assert errors.row_count == final[t][p]
            assert all(errors.get_row_at(i)[0].startswith("class-1") for i in range(errors.row_count))
            await pilot.press("c")
            assert errors.row_count == sum(final[i][j] for i in range(10) for j in range(10) if i != j)
            # per-class F1: baseline → final with the change
            scr.query_one("#ev-tabs").active = "tab-classes"
            await pilot.pause(0.1)
            classes = scr.query_one("#ev-classes")
            assert classes.row_count == 10
            change = str(classes.get_row_at(1)[3])
            assert "0.000 → " in change and "(+" in change
            # probes: every evaluation, the changed answer marked
            scr.query_one("#ev-tabs").active = "tab-probes"
            await pilot.pause(0.1)
            probes = str(scr.query_one("#ev-probes").render())
            assert "baseline @0" in probes and "final    @20" in probes and "•" in probes
            # p: the evaluation before; the baseline's matrix says class 0 for every row
            await pilot.press("p", "p")
            assert "baseline @ step 0 (1/3)" in str(scr.query_one("#ev-title").render())
            assert str(table.get_cell_at((5, 1))).strip() == "10"
            scr.query_one("#ev-tabs").active = "tab-metrics"
            await pilot.pause(0.1)
            assert "peak RAM 1.7 GB" in str(scr.query_one("#ev-metrics").render())
            await pilot.press("escape")
            assert type(app.screen).__name__ == "MonitorScreen"
    asyncio.run(go())


def test_more_than_ten_labels_scroll_and_a_live_run_updates(tuitune_home):
    rid, labels, final = seed(14, status="running")
    h = History()
    h.heartbeat(rid)
    h.update_run(rid, pid=os.getpid())

    async def go():
        app = make_app(poll_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            from tuitune.screens import messages

            app.post_message(messages.OpenEvaluation(rid))
            await wait_for(pilot, lambda: type(app.screen).__name__ == "EvaluationScreen"
                           and app.screen.query_one("#ev-matrix").row_count == 14, what="matrix")
            scr = app.screen
            table = scr.query_one("#ev-matrix")
            await wait_for(pilot, lambda: table.virtual_size.width > 0, what="matrix laid out")
            assert table.virtual_size.width > table.size.width  # 14 labels: it scrolls sideways
            assert "live" in str(scr.query_one("#ev-title").render())
            # a new evaluation arrives: the screen follows it
            h.log_evaluation(rid, "eval", 25, {"eval_accuracy": 0.5})
            h.log_class_report(rid, "eval", 25, labels, _report(labels, final), final)
            await wait_for(pilot, lambda: "(4/4)" in str(scr.query_one("#ev-title").render()), what="live update")
    asyncio.run(go())


def test_the_evaluation_screen_loads_no_torch():
    import subprocess
    import sys

    code = ("import sys, tuitune.screens.evaluation, tuitune.cli\n"
            "heavy = [m for m in ('torch','transformers','peft','trl','datasets') if m in sys.modules]\n"
            "sys.exit(1 if heavy else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
