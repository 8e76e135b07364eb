"""Predict: query a completed run as you type; the base model beside the fine-tuned one.

Answers come from a long-lived `python -m tuitune.engine serve` process (`tuitune.predict_client`), driven
from a worker; typing is debounced so only the latest text is asked.
"""

from __future__ import annotations

from typing import Any, Optional

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Header, Input, Static

from tuitune.screens.base import ServedScreen, explain

EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(score: float, width: int = 14) -> str:
    """A score in [0, 1] as a bar of eighth-block characters."""
    units = int(round(max(0.0, min(1.0, score)) * width * 8))
    full, part = divmod(units, 8)
    return ("█" * full + (EIGHTHS[part] if part else "")).ljust(width)


def answer_lines(answer: Optional[dict[str, Any]], width: int = 14) -> str:
    if not answer:
        return ""
    out = []
    for p in answer.get("predictions", [])[:8]:
        name = p.get("token_str", p.get("label", "?"))
        out.append(f"{escape(str(name)[:14]):14s} {bar(p['score'], width)} {p['score']:.3f}")
    return "\n".join(out)


class PredictScreen(ServedScreen):
    BINDINGS = [Binding("escape", "leave", "Back"), Binding("ctrl+b", "toggle_base", "Base on/off")]

    def __init__(self, run_id: int, text: str = "This is a [MASK] movie!"):
        super().__init__()
        self.run_id = run_id
        self.text = text
        self.show_base = True
        self.client = None
        self.answered: Optional[str] = None  # the text whose answer is shown
        self._timer = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"run {self.run_id} · type text (masked LM: include \\[MASK])", id="pred-title")
        yield Input(self.text, id="pred-text")
        yield Static("loading the model (first answer takes a few seconds)…", id="pred-status")
        with Horizontal(id="pred-body"):
            yield Static("", id="pred-base", classes="panel")
            yield Static("", id="pred-tuned", classes="panel")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.client = self.tuitune.predict_factory(self.run_id)
        self.query_one("#pred-base", Static).border_title = "base model"
        self.query_one("#pred-tuned", Static).border_title = "fine-tuned"
        self.query_one("#pred-text", Input).focus()
        self.ask(self.text)

    def on_input_changed(self, event: Input.Changed) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(0.3, lambda: self.ask(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.ask(event.value)

    def ask(self, text: str) -> None:
        self.text = text
        self._ask(text, self.show_base)

    @work(thread=True, exclusive=True, exit_on_error=False, group="ask")
    def _ask(self, text: str, with_base: bool) -> None:
        from tuitune.errors import TuituneError

        try:
            tuned = self.client.ask(text, top_k=5)  # type: ignore[union-attr]
            base = self.client.ask(text, top_k=5, base=True) if with_base else None  # type: ignore[union-attr]
        except TuituneError as err:
            self.app.call_from_thread(self._show, text, None, None, str(err))
            return
        self.app.call_from_thread(self._show, text, tuned, base, "")

    def _show(self, text: str, tuned, base, error: str) -> None:
        if text != self.query_one("#pred-text", Input).value:
            return  # an answer to older text: a newer question is on its way
        status = self.query_one("#pred-status", Static)
        status.update(f"[red]{escape(error)}[/red]" if error else
                      ("label probabilities" if tuned and tuned.get("task") == "classification" else "top-5 tokens"))
        if error:
            return
        self.query_one("#pred-tuned", Static).update(answer_lines(tuned))
        self.query_one("#pred-base", Static).update(answer_lines(base) if base else "(hidden: ctrl+b)")
        self.answered = text

    def action_toggle_base(self) -> None:
        self.show_base = not self.show_base
        self.ask(self.query_one("#pred-text", Input).value)


__all__ = ["PredictScreen", "bar", "answer_lines", "explain"]
