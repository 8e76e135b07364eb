"""Comparing runs: `tuitune compare` (table and --json) on runs of different tasks, one line for an
unknown run, the curves' x-axes, and the UI's compare view at 80×24."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import pytest
from conftest import tuitune_cmd
from ui_helpers import wait_for
from ui_helpers import T0, seed_history

from tuitune.app import make_app

os.environ["TZ"] = "UTC"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def seed_mlm_run() -> int:
    """A finished masked-LM run next to the seeded classification runs: perplexity, epochs, tokens/s."""
    from tuitune import paths
    from tuitune.history import History

    h = History()
    cfg = {"name": "mlm", "task": "mlm", "model": {"name_or_path": "demo:minilm"},
           "data": {"path": "demo:bbc-news", "text_column": "text", "label_column": None, "max_length": 64},
           "method": {"name": "lora"}, "training": {"max_steps": 4}}
    rid = h.create_run(cfg, run_dir_for=paths.run_dir)
    h.conn.execute("UPDATE runs SET status='completed', started_at=?, ended_at=?, step=4, max_steps=4, "
                   "main_metric='perplexity', main_value=204.0, baseline_value=49425.0, trainable_params=1000, "
                   "total_params=100000 WHERE id=?", (T0, T0 + 30_000, rid))
    for step in range(1, 5):
        h.log_metrics(rid, step, {"train/loss": 5.0 - step, "train/epoch": step / 2,
                                  "train/tokens_per_second": 100.0 * step}, t=T0 + 2000 + step * 1000)
    h.log_metrics(rid, 4, {"train/train_runtime": 12.5}, t=T0 + 20_000)
    h.close()
    return rid


def seed_class_reports(run_id: int) -> None:
    """Per-class reports at the baseline and the end, and the resources the engine records."""
    from tuitune.history import History

    h = History()
    labels = ["sport", "tech"]
    for phase, step, f1 in (("baseline", 0, (0.2, 0.4)), ("eval", 20, (0.5, 0.6)), ("final", 60, (0.9, 0.8))):
        report = {lab: {"precision": f, "recall": f, "f1": f, "support": 10} for lab, f in zip(labels, f1)}
        h.log_class_report(run_id, phase, step, labels, report, [[5, 5], [5, 5]])
    h.update_run(run_id, train_time_s=80.0, peak_ram_bytes=1800 << 20, tokens_per_s=1234.0)
    h.close()


def test_compare_runs_of_two_tasks_json_and_table(tuitune_home):
    ids = seed_history()
    mlm = seed_mlm_run()
    seed_class_reports(ids["bbc-full"])
    out = subprocess.run(tuitune_cmd() + ["compare", str(ids["bbc-full"]), str(mlm), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    full, lm = data["runs"]
    assert (full["task"], full["main_metric"], full["baseline_value"], full["main_value"]) == \
        ("classification", "accuracy", 0.21, 0.95)
    assert full["trainable_pct"] == pytest.approx(100.0) and full["wall_time_s"] == pytest.approx(95.0)
    assert full["per_class_f1"] == {"sport": {"baseline": 0.2, "final": 0.9}, "tech": {"baseline": 0.4, "final": 0.8}}
    assert (full["train_time_s"], full["peak_ram_bytes"], full["tokens_per_s"]) == (80.0, 1800 << 20, 1234.0)
    assert (lm["task"], lm["main_metric"], lm["main_value"]) == ("mlm", "perplexity", 204.0)
    assert lm["trainable_pct"] == pytest.approx(1.0)
    assert lm["train_time_s"] == 12.5 and lm["tokens_per_s"] == pytest.approx(250.0)
    assert lm["per_class_f1"] == {}  # no labels: nothing to show, no error
    diff = {d["key"]: d["values"] for d in data["config_diff"]}
    assert diff["task"] == ["classification", "mlm"] and diff["method.name"] == ["full", "lora"]

    text = subprocess.run(tuitune_cmd() + ["compare", str(ids["bbc-full"]), str(ids["bbc-lora"]), str(mlm)],
                          capture_output=True, text=True)
    assert text.returncode == 0, text.stderr
    rows = {ln.split("  ")[0]: ln for ln in text.stdout.splitlines()}
    assert "0.210 → 0.950" in rows["before → after"] and "49,425 → 204.0" in rows["before → after"]
    assert "100.00%" in rows["trainable"] and "1.32%" in rows["trainable"] and "1.00%" in rows["trainable"]
    assert rows["main metric"].split()[2:] == ["accuracy", "accuracy", "perplexity"]
    assert rows["F1 sport"].split("  ", 1)[1].split() == ["0.200", "→", "0.900", "—", "—"]
    assert "1.8 GB" in rows["peak RAM"] and "1m20s" in rows["train time"] and "12s" in rows["train time"]
    assert "training.learning_rate" in text.stdout


@pytest.mark.parametrize("args, message", [
    (["1", "99"], "no run 99 in the history"),
    (["1"], "compare needs two or more runs"),
])
def test_compare_bad_runs_one_line_non_zero(tuitune_home, args, message):
    seed_history()
    out = subprocess.run(tuitune_cmd() + ["compare", *args], capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [f"tuitune: error: {out.stderr.split('error: ', 1)[1].strip()}"]
    assert message in out.stderr
    js = subprocess.run(tuitune_cmd() + ["compare", *args, "--json"], capture_output=True, text=True)
    assert js.returncode == 2 and message in json.loads(js.stdout)["error"]


def test_curves_by_step_epoch_and_wall_time(tuitune_home):
    from tuitune.compare import curve
    from tuitune.history import History

    rid = seed_mlm_run()
    rows = History().metrics(rid)
    assert curve(rows, "train/loss", "step") == ([1, 2, 3, 4], [4.0, 3.0, 2.0, 1.0])
    assert curve(rows, "train/loss", "epoch")[0] == [0.5, 1.0, 1.5, 2.0]
    assert curve(rows, "train/loss", "time", start_ms=T0)[0] == [3.0, 4.0, 5.0, 6.0]
    # eval points between logged epochs are placed by interpolation
    assert curve(rows + [{"key": "eval/loss", "step": 3, "value": 1.0, "time": T0}], "eval/loss", "epoch")[0] == [1.5]


def test_compare_view_table_at_80x24(tuitune_home):
    ids = seed_history()
    seed_class_reports(ids["bbc-full"])

    async def go():
        app = make_app(poll_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.screen.query_one("#runs")
            await wait_for(pilot, lambda: table.row_count == 2, 10, "runs listed")
            await pilot.press("space", "down", "space", "v")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "CompareScreen" and app.screen.data, 10)
            scr = app.screen
            await pilot.pause(0.1)
            cmp_table = scr.query_one("#cmp-table")
            text = str(cmp_table.render())
            lines = text.splitlines()
            assert all(len(ln) <= 78 for ln in lines), lines
            # on the first screen and whole: every line of the table gets a row of the terminal
            assert cmp_table.region.y < 3 and cmp_table.region.bottom <= 23
            assert cmp_table.region.height >= len(lines), (cmp_table.region, len(lines))
            rows = {ln.split("  ")[0].strip(): ln for ln in lines}
            assert "0.210 → 0.950" in rows["before → after"] and "0.210 → 0.850" in rows["before → after"]
            assert "100.00%" in rows["trainable"] and "1.32%" in rows["trainable"]
            assert "1m35s" in rows["wall time"] and "1.8 GB" in rows["peak RAM"] and "—" in rows["peak RAM"]
            assert "0.400 → 0.800" in rows["F1 tech"]
            assert "training.learning_rate" in str(scr.query_one("#cmp-diff").render())
            assert scr.x == "step"
            await pilot.press("x")
            assert scr.x == "epoch"
            await pilot.press("x")
            assert scr.x == "time"
            await pilot.press("escape")
            assert type(app.screen).__name__ == "RunsScreen"
    asyncio.run(go())
