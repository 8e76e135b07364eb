"""Rough edges found by hand at 80x24, trying tuitune as a new user would (issue 10): each one
fixed and held here by a CLI test (the real `tuitune` entry point) or a Pilot test at 80x24."""

from __future__ import annotations

import json
import os

from conftest import tiny_config
from helpers_faults import cli
from tuitune.history import History


def _row(tiny_bert, tiny_csv, **sections) -> int:
    from tuitune import paths
    from tuitune.config import validate_config

    h = History()
    run_id = h.create_run(validate_config(tiny_config(tiny_bert, tiny_csv, **sections)).model_dump(mode="json"),
                          run_dir_for=paths.run_dir)
    h.close()
    return run_id


# -- tuitune show: "final" only for the final evaluation ------------------------------------------

def test_show_labels_a_periodic_evaluation_by_its_step_while_running(tiny_bert, tiny_csv):
    run_id = _row(tiny_bert, tiny_csv)
    h = History()
    h.update_run(run_id, pid=os.getpid(), max_steps=12, main_metric="accuracy")
    h.set_status(run_id, "running")
    h.log_evaluation(run_id, "baseline", 0, {"eval_accuracy": 0.33})
    h.log_evaluation(run_id, "eval", 4, {"eval_accuracy": 0.5})  # as the engine's callback writes it
    r = cli("show", run_id)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(ln.startswith("  eval@4   {'eval_accuracy': 0.5}") for ln in lines), r.stdout
    assert not any(ln.strip().startswith("final") for ln in lines), r.stdout
    shown = json.loads(cli("show", run_id, "--json").stdout)
    assert (shown["metrics_phase"], shown["metrics_step"]) == ("eval", 4)

    h.log_evaluation(run_id, "final", 12, {"eval_accuracy": 0.75})
    h.set_status(run_id, "completed")
    r = cli("show", run_id)
    assert any(ln.startswith("  final    {'eval_accuracy': 0.75}") for ln in r.stdout.splitlines()), r.stdout
    assert "eval@" not in r.stdout
    h.close()


# -- tuitune predict names the model's own mask token -------------------------------------------

def test_predict_names_the_models_own_mask_token(tiny_bert, tiny_csv):
    """A fill-mask model whose mask token is `<mask>` (RoBERTa's spelling), asked without one."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from tuitune import paths

    cfg = tiny_config(tiny_bert, tiny_csv, task="mlm")
    cfg["data"]["label_column"] = None
    run_id = _row(tiny_bert, tiny_csv)
    h = History()
    h.update_run(run_id, config=json.dumps(cfg))
    h.set_status(run_id, "completed")
    h.close()
    model_dir = paths.run_dir(run_id) / "model"
    tok = AutoTokenizer.from_pretrained(str(tiny_bert), mask_token="<mask>")
    model = AutoModelForMaskedLM.from_pretrained(str(tiny_bert))
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    (model_dir / "tuitune.json").write_text(json.dumps({"task": "mlm", "label_names": [], "base_model": str(tiny_bert),
                                                         "method": "full", "peft": False}))
    r = cli("predict", run_id, "This is a great movie!")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == ('tuitune: error: text has no <mask>: write e.g. "This is a <mask> movie!" '
                                '([MASK] works too)')
    r = cli("predict", run_id, "This is a <mask> movie!", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(json.loads(r.stdout)["predictions"]) == 5


# -- the UI at 80x24 (Pilot) ----------------------------------------------------------------------

import asyncio  # noqa: E402
from ui_helpers import wait_for  # noqa: E402

import pytest  # noqa: E402


def _footer(app) -> str:
    from textual.widgets._footer import FooterKey

    return " | ".join(f"{k.key_display} {k.description}" for k in app.screen.query(FooterKey))


def test_method_screen_shows_the_chosen_methods_fields_only(tuitune_home):
    from textual.widgets import Select

    from tuitune.app import make_app
    from tuitune.screens.wizard import MethodScreen

    async def go():
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            app.draft = {"task": "classification", "model": {"name_or_path": "demo:minilm"},
                         "data": {"path": "demo:bbc-news"}}
            app.push_screen(MethodScreen())
            await pilot.pause(0.2)
            scr = app.screen
            row = lambda key: scr.query_one(f"#row-f-{key}")  # noqa: E731
            lora = ["method-lora_r", "method-lora_alpha", "method-lora_dropout", "method-target_modules"]
            for method, shown, hidden in [
                ("last_layer", [], lora + ["method-freeze_layers", "method-num_virtual_tokens", "quantization-load_in"]),
                ("lora", lora + ["quantization-load_in"], ["method-freeze_layers", "method-num_virtual_tokens"]),
                ("freeze_layers", ["method-freeze_layers"], lora + ["method-num_virtual_tokens"]),
                ("prompt_tuning", ["method-num_virtual_tokens"], lora[:3] + ["method-freeze_layers"]),
            ]:
                scr.query_one("#f-method-name", Select).value = method
                await pilot.pause(0.2)
                assert all(row(k).display for k in shown + ["training-learning_rate"]), (method, shown)
                assert not any(row(k).display for k in hidden), (method, hidden)
                assert app.draft["method"]["name"] == method
                # another method's fields are not in the config the review shows
                assert ("lora_r" in app.draft["method"]) == (method == "lora"), app.draft["method"]
            # a hidden field's bad value does not block; a shown one is checked as typed
            scr.query_one("#f-method-name", Select).value = "lora"
            await pilot.pause(0.2)
            scr.query_one("#f-method-lora_r").value = "0"
            await pilot.pause(0.2)
            assert "lora_r must be > 0" in str(scr.query_one("#f-method-lora_r-msg").render())
            scr.query_one("#f-method-name", Select).value = "full"
            await pilot.pause(0.2)
            await pilot.press("ctrl+n")
            await pilot.pause(0.2)
            assert type(app.screen).__name__ == "ReviewScreen"
    asyncio.run(go())


def test_dataset_token_stats_say_truncated_and_suggest_a_max_length(tuitune_home, tiny_bert, tmp_path):
    from tuitune.app import make_app
    from tuitune.screens.wizard import DatasetScreen

    rows = ["text,label"] + [f"{' '.join(['word'] * (10 + i % 40))},{i % 2}" for i in range(100)]
    data = tmp_path / "long.csv"
    data.write_text("\n".join(rows) + "\n")

    async def go():
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            app.draft = {"task": "classification", "model": {"name_or_path": str(tiny_bert)},
                         "data": {"path": str(data), "max_length": 16}}
            app.push_screen(DatasetScreen())
            await pilot.pause(0.2)
            stats = app.screen.query_one("#data-stats")
            await wait_for(pilot, lambda: "tokens (" in str(stats.render()), 30, "token stats")
            text = str(stats.render())
            lines = [ln for ln in text.splitlines() if ln.strip()]
            assert any(ln.strip().startswith("max_length 16 truncates") for ln in lines), text
            p95 = int(text.split("p95 ")[1].split()[0])
            assert p95 > 16
            assert f"max_length {-(-p95 // 8) * 8} keeps p95 whole" in text, text
            # every token line fits the panel at 80 columns (nothing cut off mid-sentence)
            mine = lines[next(i for i, ln in enumerate(lines) if ln.startswith("tokens")):]
            assert max(len(ln) for ln in mine) <= stats.content_region.width, (stats.content_region.width, mine)
            assert len(lines) <= stats.content_region.height, "every line shows"
    asyncio.run(go())


def _monitor_run(status: str) -> int:
    """A run with metrics, events and an engine.log as the engine leaves them (Trainer's raw lines)."""
    from tuitune import paths

    h = History()
    rid = h.create_run({"name": "tidy", "task": "classification", "model": {"name_or_path": "demo:minilm"},
                        "data": {"path": "demo:bbc-news"}, "method": {"name": "full"}},
                       run_dir_for=paths.run_dir)
    h.update_run(rid, pid=os.getpid(), max_steps=3, main_metric="accuracy")
    h.set_status(rid, "running")
    for step in (1, 2, 3):
        h.log_metrics(rid, step, {"train/loss": 1.0 / step, "train/learning_rate": 5e-5, "train/grad_norm": 2.5})
    h.log_event(rid, "checkpoint", "checkpoint-3", step=3)
    if status != "running":
        h.set_status(rid, status)
    d = paths.run_dir(rid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "engine.log").write_text("Writing model shards:   0%|          | 0/1 [00:00<?, ?it/s]\r"
                                  "Writing model shards: 100%|##########| 1/1\n{'loss': '1.106', 'grad_norm': '2.5'}\n")
    h.close()
    return rid


@pytest.mark.parametrize("status", ["running", "completed"])
def test_monitor_footer_and_tidy_log(tuitune_home, status):
    from tuitune.app import make_app
    from tuitune.screens.monitor import MonitorScreen

    rid = _monitor_run(status)

    async def go():
        app = make_app(poll_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            app.push_screen(MonitorScreen(rid))
            await pilot.pause(0.2)
            mon = app.screen
            await wait_for(pilot, lambda: mon.run.get("status") == status, what="the run read")
            await pilot.pause(0.2)
            footer = _footer(app)
            # a replay has nothing to stop; a live run has nothing to predict with yet
            assert ("Stop run" in footer) == (status == "running"), footer
            assert ("Predict" in footer) == (status == "completed"), footer
            log = str(mon.query_one("#mon-log").render())
            assert "step 3     loss 0.3333  lr 5.00e-05  grad 2.5" in log, log
            assert "checkpoint @3 checkpoint-3" in log, log
            assert "Writing model shards" not in log and "{'loss'" not in log
            assert "Raw log" in footer
            await pilot.press("l")
            await pilot.pause(0.1)
            raw = str(mon.query_one("#mon-log").render())
            assert "engine.log" in raw and "{'loss': '1.106'" in raw and "Writing model shards: 100%" in raw, raw
            await pilot.press("l")
            await pilot.pause(0.1)
            assert "step 3" in str(mon.query_one("#mon-log").render())
            if status == "running":
                await pilot.press("s")  # live: asks first
                await pilot.pause(0.1)
                assert type(app.screen).__name__ == "ConfirmDialog"
    asyncio.run(go())


def test_every_methods_own_fields_are_config_fields():
    """The wizard shows a method's `method.*` settings from the registry: each must exist."""
    from tuitune.config import MethodConfig
    from tuitune.screens.wizard import FIELDS, applies
    from tuitune.tasks import METHODS

    for spec in METHODS.values():
        assert set(spec.fields) <= set(MethodConfig.model_fields), spec.name
    shown = {m: [k for k, _, _ in FIELDS if k.startswith("method.") and applies(k, m)] for m in METHODS}
    assert shown["full"] == shown["bitfit"] == ["method.name"]
    assert "method.lora_r" in shown["qlora"] and "method.target_modules" in shown["ia3"]
