"""Predict for SFT/DPO runs in the UI: a chat at 80×24 whose answer streams token by token from the
real `serve` engine process, fine-tuned and base model side by side, multi-turn."""

from __future__ import annotations

import asyncio
import os

import pytest
from conftest import run_in_process, tiny_config
from ui_helpers import wait_for

from tuitune.app import make_app

os.environ["TZ"] = "UTC"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_chat_streams_the_answer_as_it_is_generated(tiny_llama):
    from tuitune.engine.predict import Predictor

    cfg = tiny_config(tiny_llama, "demo:chat", name="tiny-sft", task="sft", method={"name": "lora"},
                      data={"path": "demo:chat", "max_length": 48, "max_train_samples": 16, "max_eval_samples": 4,
                            "label_column": None, "messages_column": "messages"},
                      training={"max_steps": 1, "eval_steps": 1, "per_device_train_batch_size": 4})
    run_id = run_in_process(cfg)
    # the tiny model's greedy answer is blank lines unless repeating is penalised hard
    gen = dict(max_new_tokens=24, do_sample=False, repetition_penalty=3.0)
    tuned = Predictor.for_run(run_id)
    expected = tuned.predict("Hi there", **gen)["generated"]
    first = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": expected}]
    expected_2 = tuned.predict("Tell me more", history=first, **gen)["generated"]
    expected_base = Predictor.for_run(run_id, base=True).predict("Hi there", **gen)["generated"]
    assert len(expected.split()) >= 3, expected  # enough words to stream in several pieces

    async def go():
        app = make_app(poll_s=0.3)
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.screen.query_one("#runs")
            await wait_for(pilot, lambda: table.row_count == 1, 10, "run listed")
            await pilot.press("i")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "ChatScreen", 10, "chat opened")
            chat = app.screen
            for widget in ("#chat-system", "#chat-greedy", "#chat-rep", "#chat-input"):  # fits 80 columns
                region = chat.query_one(widget).region
                assert region.width > 0 and region.right <= 80, (widget, region)
            chat.query_one("#chat-max").value = "24"
            chat.query_one("#chat-greedy").value = True
            chat.query_one("#chat-rep").value = "3.0"
            chat.query_one("#chat-input").focus()
            await pilot.press(*"Hi there", "enter")
            await wait_for(pilot, lambda: not chat.busy, 180, "the answers")
            log = chat.stream_log["tuned"]
            assert len(log) >= 3, log  # drawn several times while it was generated
            assert all(b.startswith(a) for a, b in zip(log, log[1:])), log  # each update extends the last
            assert log[-1].strip() == expected
            assert chat.chats["tuned"].turns == [("Hi there", expected)]
            assert chat.chats["base"].turns == [("Hi there", expected_base)]
            tuned_text = str(chat.query_one("#chat-tuned").render())
            assert "Hi there" in tuned_text and expected.split()[0] in tuned_text
            # a second turn: the engine sees the conversation so far
            width = chat.query_one("#chat-tuned").region.width
            await pilot.press("ctrl+b")  # base hidden: only the fine-tuned model answers, full width
            await pilot.pause(0.1)
            assert not chat.query_one("#chat-base-box").display
            assert chat.query_one("#chat-tuned").region.width > 1.5 * width
            await pilot.press(*"Tell me more", "enter")
            await wait_for(pilot, lambda: not chat.busy, 180, "the second answer")
            assert chat.chats["tuned"].turns[-1] == ("Tell me more", expected_2)
            assert len(chat.chats["base"].turns) == 1
            # bad settings: one clear message, nothing sent
            chat.query_one("#chat-greedy").value = False
            chat.query_one("#chat-temp").value = "0"
            chat.query_one("#chat-input").focus()
            await pilot.press(*"again", "enter")
            await pilot.pause(0.2)
            assert type(app.screen).__name__ == "MessageDialog"
            assert "temperature must be > 0" in str(app.screen.query_one("#message").render())
            await pilot.press("escape", "escape")

    asyncio.run(go())
