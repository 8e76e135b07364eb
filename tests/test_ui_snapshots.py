"""SVG snapshots of every screen at 80×24 and 120×40 (pytest-textual-snapshot).

Deterministic: a seeded history with fixed timestamps (TZ=UTC), demo assets only, an empty HF
cache, a fake predict client, cursor blink off. Update with `pytest --snapshot-update`.
"""

from __future__ import annotations

import os
import time

import pytest
from textual.widgets import Input

from ui_helpers import seed_history
from tuitune.app import make_app

SIZES = [(80, 24), (120, 40)]


@pytest.fixture(autouse=True)
def fixed_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
    time.tzset()


class FakeClient:
    def __init__(self, run_id):
        self.run_id = run_id

    def ask(self, text, *, top_k=5, base=False):
        words = (["good", "great", "bad", "fun", "long"] if not base else ["the", "a", ",", ".", "and"])
        scores = [0.41, 0.22, 0.13, 0.08, 0.05] if not base else [0.02, 0.018, 0.015, 0.011, 0.01]
        return {"task": "mlm", "predictions": [{"token_str": w, "score": s} for w, s in zip(words, scores)]}

    def close(self):
        pass


async def settle(pilot, cond=lambda: True, timeout=15.0):
    t = time.monotonic()
    while time.monotonic() - t < timeout and not cond():
        await pilot.pause(0.1)
    await pilot.pause(0.2)
    for inp in pilot.app.screen.query(Input):
        inp.cursor_blink = False
    await pilot.pause(0.1)


def app_with_history():
    seed_history()
    return make_app(poll_s=0.2, predict_factory=FakeClient)


@pytest.mark.parametrize("size", SIZES)
def test_runs(snap_compare, size):
    async def before(pilot):
        await settle(pilot, lambda: pilot.app.screen.query_one("#runs").row_count == 2)
    assert snap_compare(app_with_history(), terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_replay(snap_compare, size):
    async def before(pilot):
        await settle(pilot, lambda: pilot.app.screen.query_one("#runs").row_count == 2)
        await pilot.press("down", "enter")
        await settle(pilot, lambda: getattr(pilot.app.screen, "_done", False))
        await pilot.press(*["left"] * 20)
        await settle(pilot)
    assert snap_compare(app_with_history(), terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_compare(snap_compare, size):
    async def before(pilot):
        await settle(pilot, lambda: pilot.app.screen.query_one("#runs").row_count == 2)
        await pilot.press("space", "down", "space", "v")
        await settle(pilot, lambda: bool(getattr(pilot.app.screen, "data", None)))
    assert snap_compare(app_with_history(), terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_confirm_delete(snap_compare, size):
    async def before(pilot):
        await settle(pilot, lambda: pilot.app.screen.query_one("#runs").row_count == 2)
        await pilot.press("d")
        await settle(pilot)
    assert snap_compare(app_with_history(), terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_model(snap_compare, size):
    async def before(pilot):
        await pilot.press("n", *"demo:minilm", "enter")
        await settle(pilot, lambda: "parameters" in str(pilot.app.screen.query_one("#model-info").render()))
    assert snap_compare(make_app(), terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_dataset(snap_compare, size):
    async def before(pilot):
        from tuitune.screens.wizard import DatasetScreen
        from tuitune import demo

        await settle(pilot)
        pilot.app.draft = {"task": "classification", "model": {"name_or_path": "demo:minilm"},
                           "data": {"path": "demo:tweets"}}
        await pilot.app.push_screen(DatasetScreen(model_path=str(demo.path("demo:minilm"))))
        await settle(pilot, lambda: "rows" in str(pilot.app.screen.query_one("#data-stats").render()), 30)
    assert snap_compare(make_app(), terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_method_and_review(snap_compare, size):
    async def before(pilot):
        from tuitune.screens.wizard import MethodScreen
        from tuitune.presets import load_preset_dict

        await settle(pilot)
        pilot.app.draft = load_preset_dict("bbc-news-minilm")
        await pilot.app.push_screen(MethodScreen())
        await settle(pilot)
        pilot.app.screen.query_one("#f-method-lora_alpha").value = "-1"
        await settle(pilot)
    assert snap_compare(make_app(), terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_review(snap_compare, size):
    async def before(pilot):
        from tuitune.screens.wizard import MethodScreen
        from tuitune.presets import load_preset_dict

        await settle(pilot)
        pilot.app.draft = load_preset_dict("bbc-news-minilm")
        await pilot.app.push_screen(MethodScreen())
        await settle(pilot)
        await pilot.press("ctrl+n")
        await settle(pilot)
    assert snap_compare(make_app(), terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES)
def test_predict(snap_compare, size):
    async def before(pilot):
        await settle(pilot, lambda: pilot.app.screen.query_one("#runs").row_count == 2)
        await pilot.press("down", "i")
        await settle(pilot, lambda: "great" in str(pilot.app.screen.query_one("#pred-tuned").render()))
    assert snap_compare(app_with_history(), terminal_size=size, run_before=before)
