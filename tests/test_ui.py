"""The UI driven with Pilot at 80×24: every screen, a real tiny run in a real engine process.

The engine runs as a subprocess (as in production) on the tiny 2-layer BERT; the UI only reads
the history. One long test walks the whole story (it shares the engine's start-up cost).
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys

import pytest
from rich.console import Console

from conftest import tiny_config
from ui_helpers import seed_history, wait_for
from tuitune.app import make_app

os.environ["TZ"] = "UTC"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def token_rows(panel) -> list[tuple[str, float]]:
    """(token, score) rows of a Predict answer panel: a name, a bar, a probability; best first."""
    rows = []
    for line in str(panel.render()).splitlines():
        m = re.fullmatch(r"(.+?)\s+[ ▏▎▍▌▋▊▉█]*\s(\d\.\d{3})", line.rstrip())
        if m:
            rows.append((m.group(1).strip(), float(m.group(2))))
    scores = [s for _, s in rows]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores), rows
    assert sum(scores) <= 1.005, rows
    return rows


def test_ui_imports_no_torch():
    code = ("import sys, tuitune.app, tuitune.cli, tuitune.screens.runs, tuitune.screens.wizard, "
            "tuitune.screens.monitor, tuitune.screens.predict, tuitune.screens.chat, tuitune.screens.dialogs, "
            "tuitune.screens.messages, tuitune.formatting, tuitune.records, tuitune.runstore, tuitune.model_info, "
            "tuitune.dataset_info, tuitune.predict_client, tuitune.presets\n"
            "heavy = [m for m in ('torch','transformers','peft','trl','datasets','bitsandbytes') if m in sys.modules]\n"
            "print(heavy); sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_runs_replay_compare_filter_delete(tuitune_home):
    ids = seed_history()

    async def go():
        app = make_app(poll_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.screen.query_one("#runs")
            await wait_for(pilot, lambda: table.row_count == 2, 10, "runs listed")
            # filter by status
            await pilot.press("slash", *"stopped", "enter")
            await pilot.pause(0.1)
            assert table.row_count == 1
            await pilot.press("slash", "ctrl+u", "enter")
            await pilot.pause(0.1)
            assert table.row_count == 2
            # replay the first (newest) run: arrows scrub
            await pilot.press("enter")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "MonitorScreen" and app.screen._done, 10,
                           "replay loaded")
            mon = app.screen
            assert mon.tl.series["train/loss"][0][-1] == 40
            await pilot.press("left", "left", "left")
            assert mon._step() == 37
            assert "replay @ step 37" in str(mon.query_one("#mon-title").render())
            assert "GPU N/A" in str(mon.query_one("#mon-system").render())
            await pilot.press("escape")
            # compare two runs
            await pilot.press("space", "down", "space", "v")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "CompareScreen" and app.screen.data, 10)
            assert "training.learning_rate" in str(app.screen.query_one("#cmp-diff").render())
            await pilot.press("escape")
            # clone: the wizard opens on the run's config; a preset: the wizard opens on the preset
            await pilot.press("c")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "ModelScreen", 10, "wizard on the clone")
            assert app.draft["name"] == "bbc-full-clone" and app.draft["training"]["learning_rate"] == 1e-4
            await pilot.press("escape", "p")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "PickDialog", 10, "preset list")
            await pilot.press("enter")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "ModelScreen", 10, "wizard on the preset")
            assert app.draft["name"] and app.draft["model"]["name_or_path"]
            await pilot.press("escape")
            # delete with confirmation: 'n' keeps it, 'y' deletes
            await pilot.press("d", "n")
            await pilot.pause(0.2)
            assert table.row_count == 2
            await pilot.press("d", "y")
            await wait_for(pilot, lambda: table.row_count == 1, 10, "run deleted")
            # a finished run cannot be stopped: one clear message, no crash
            await pilot.press("s")
            await pilot.pause(0.1)
            assert type(app.screen).__name__ == "MessageDialog"
            assert "only a live run can be stopped" in str(app.screen.query_one("#message").render())
            await pilot.press("escape")
    asyncio.run(go())


def test_question_mark_lists_the_keys_the_footer_cuts(tuitune_home):
    """At 80x24 the Runs footer cannot show all its keys; `?` opens a panel that lists them all."""
    seed_history()

    async def go():
        app = make_app(poll_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.screen.query_one("#runs").row_count == 2, 10, "runs listed")
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: bool(app.screen.query("HelpPanel")), 5, "key panel")
            keys = app.screen.query_one("KeyPanel BindingsTable")
            console = Console(width=80, record=True, file=io.StringIO())
            console.print(keys.render_bindings_table())
            shown = console.export_text()
            assert "Quit" in shown and "Filter" in shown and "Delete" in shown
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: not app.screen.query("HelpPanel"), 5, "key panel closed")
            # typed into the filter, `?` is text, not the key
            await pilot.press("slash", "question_mark")
            assert "?" in app.screen.query_one("#filter").value
            assert not app.screen.query("HelpPanel")
    asyncio.run(go())


def test_bad_input_messages(tuitune_home, tiny_csv):
    async def go():
        app = make_app(poll_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("n")
            await pilot.pause(0.1)
            # an unreachable model: an inline message, the screen stays
            await pilot.press(*"no-such-org/no-such-model", "enter")
            err = app.screen.query_one("#model-error")
            await wait_for(pilot, lambda: "not" in str(err.render()) and "inspecting" not in str(err.render()), 20)
            assert "no-such-org/no-such-model" in str(err.render())
            await pilot.press("ctrl+n")
            assert type(app.screen).__name__ == "ModelScreen"
            # a dataset without the chosen label column
            app.draft = {"task": "classification", "model": {"name_or_path": "demo:minilm"},
                         "data": {"path": str(tiny_csv), "label_column": "stars"}}
            from tuitune.screens.wizard import DatasetScreen, MethodScreen

            app.push_screen(DatasetScreen())
            await pilot.pause(0.1)
            derr = app.screen.query_one("#data-error")
            await wait_for(pilot, lambda: "stars" in str(derr.render()), 20, "missing column message")
            assert "columns are text, label" in str(derr.render())
            # a value out of range: the schema's own message next to the field
            app.push_screen(MethodScreen())
            await pilot.pause(0.1)
            scr = app.screen
            scr.query_one("#f-method-name").value = "lora"  # LoRA's fields show for LoRA only
            await pilot.pause(0.1)
            scr.query_one("#f-method-lora_r").value = "0"
            await pilot.pause(0.1)
            assert "lora_r must be > 0" in str(scr.query_one("#f-method-lora_r-msg").render())
            await pilot.press("ctrl+n")
            assert type(app.screen).__name__ == "MethodScreen"
    asyncio.run(go())


def test_full_story_launch_monitor_stop_replay_predict(tuitune_home, tiny_bert, tiny_csv):
    """Pick model + data, configure LoRA, launch, watch loss arrive, stop, find it, replay, predict."""
    from tuitune import launcher
    from tuitune.config import validate_config
    from tuitune.history import History

    # A tiny masked-LM run to query later, trained in the background meanwhile.
    h = History()
    mlm = tiny_config(tiny_bert, tiny_csv, name="tiny-mlm", task="mlm",
                      data={"label_column": None}, training={"max_steps": 4, "eval_steps": 2})
    mlm_id = launcher.start_run(h, validate_config(mlm))

    async def go():
        app = make_app(poll_s=0.3)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("n")
            await pilot.pause(0.1)
            await pilot.press(*str(tiny_bert), "enter")
            info = app.screen.query_one("#model-info")
            await wait_for(pilot, lambda: "parameters" in str(info.render()), 20, "model inspected")
            assert "BertForMaskedLM" in str(info.render())
            await pilot.press("ctrl+n")
            assert type(app.screen).__name__ == "DatasetScreen"
            await pilot.press(*str(tiny_csv), "enter")
            stats = app.screen.query_one("#data-stats")
            await wait_for(pilot, lambda: "240 rows" in str(stats.render()), 20, "dataset read")
            assert "tokens (tokenizer" in str(stats.render())
            await pilot.press("ctrl+n")
            assert type(app.screen).__name__ == "MethodScreen"
            scr = app.screen
            scr.query_one("#f-method-name").value = "lora"
            for key, value in [("name", "ui-lora"), ("training-max_steps", "400"), ("method-lora_r", "4"),
                               ("data-max_length", "32"), ("training-logging_steps", "1"),
                               ("training-eval_steps", "50"), ("training-learning_rate", "0.005"),
                               ("training-per_device_train_batch_size", "8")]:
                scr.query_one(f"#f-{key}").value = value
            await pilot.pause(0.2)
            app.draft["training"]["use_cpu"] = True
            await pilot.press("ctrl+n")
            await pilot.pause(0.2)
            assert type(app.screen).__name__ == "ReviewScreen"
            yaml_text = str(app.screen.query_one("#yaml").render())
            assert "name: lora" in yaml_text and "lora_r: 4" in yaml_text
            await pilot.press("ctrl+l")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "MonitorScreen", 20, "monitor opened")
            mon = app.screen
            await wait_for(pilot, lambda: len(mon.tl.series.get("train/loss", ([], []))[0]) >= 3, 150,
                           "loss points in the monitor")
            assert mon.run.status == "running"
            await pilot.press("s", "y")
            await wait_for(pilot, lambda: mon.run.status == "stopped", 60, "run stopped")
            run_id = mon.run_id
            await pilot.press("escape")
            table = app.screen.query_one("#runs")
            await wait_for(pilot, lambda: any(r.id == run_id and r.status == "stopped"
                                              for r in app.screen.runs), 10, "run listed as stopped")
            # replay it
            app.screen.query_one("#filter").value = "ui-lora"
            await pilot.pause(0.2)
            assert table.row_count == 1
            table.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "MonitorScreen" and app.screen._done, 10)
            n = len(app.screen.tl.steps())
            await pilot.press("left")
            assert app.screen.cursor == n - 2
            await pilot.press("escape")
            # predict on the completed masked-LM run
            await wait_for(pilot, lambda: any(r.id == mlm_id and r.status == "completed"
                                              for r in app.screen.runs), 120, "mlm run completed")
            app.screen.query_one("#filter").value = "tiny-mlm"
            await pilot.pause(0.2)
            table.focus()
            await pilot.press("i")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "PredictScreen", 10, "predict opened")
            pred = app.screen
            first = pred.query_one("#pred-text").value
            await wait_for(pilot, lambda: pred.answered == first, 120, "mask-fill answers")
            tuned_rows = token_rows(pred.query_one("#pred-tuned"))
            base_rows = token_rows(pred.query_one("#pred-base"))
            assert len(tuned_rows) == 5 and len(base_rows) == 5, (tuned_rows, base_rows)
            # as you type: the new question gets its own answer from the model
            await pilot.press(*" the [MASK]")
            await wait_for(pilot, lambda: pred.answered is not None and pred.answered.endswith("the [MASK]"), 120,
                           "answer to the new text")
            assert len(token_rows(pred.query_one("#pred-tuned"))) == 5
            assert "top-5 tokens" in str(pred.query_one("#pred-status").render())
            await pilot.press("escape")
    try:
        asyncio.run(go())
    finally:
        h.close()
