"""Chat: talk to a completed SFT / DPO run, its answer streamed token by token, the base model's
answer beside it. Multi-turn within the screen: each side keeps its own conversation.

Answers come from the long-lived `python -m tuitune.engine serve` process (`tuitune.predict_client`)
in a worker thread; each piece of text the engine streams is posted to the screen as a message
(`post_message` is thread-safe), so the panels fill in as the model generates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Checkbox, Footer, Header, Input, Label, Static

from tuitune.errors import TuituneError
from tuitune.screens.base import ServedScreen

SIDES = ("tuned", "base")
TITLES = {"tuned": "fine-tuned", "base": "base model"}


@dataclass
class ChatToken(Message):
    """A new piece of one side's answer."""

    side: str
    piece: str


@dataclass
class ChatDone(Message):
    """One side's answer is complete (or failed with `error`)."""

    side: str
    answer: Optional[str] = None
    error: Optional[str] = None
    last: bool = False  # the last side of this turn


@dataclass
class Conversation:
    turns: list[tuple[str, str]] = field(default_factory=list)  # (user, assistant)
    pending: Optional[str] = None  # the user turn being answered
    partial: str = ""  # the answer so far

    def history(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for user, answer in self.turns:
            out += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        return out

    def render(self) -> str:
        lines = []
        for user, answer in self.turns:
            lines += [f"[b]you[/b] {escape(user)}", f"[b]model[/b] {escape(answer)}", ""]
        if self.pending is not None:
            lines += [f"[b]you[/b] {escape(self.pending)}", f"[b]model[/b] {escape(self.partial)}▌"]
        return "\n".join(lines).rstrip() or "[dim](no conversation yet)[/dim]"


class ChatScreen(ServedScreen):
    BINDINGS = [Binding("escape", "leave", "Back"), Binding("ctrl+b", "toggle_base", "Base on/off"),
                Binding("ctrl+r", "reset", "New chat")]

    def __init__(self, run_id: int):
        super().__init__()
        self.run_id = run_id
        self.client = None
        self.show_base = True
        self.busy = False
        self.chats = {side: Conversation() for side in SIDES}
        self.stream_log: dict[str, list[str]] = {side: [] for side in SIDES}  # each drawn state of the answer

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="chat-system-row", classes="chat-row"):
            yield Label("system ")
            yield Input("", placeholder="an optional system prompt", id="chat-system", compact=True)
        with Horizontal(id="chat-gen-row", classes="chat-row"):
            yield Label("max new ")
            yield Input("128", id="chat-max", type="integer", compact=True, classes="chat-num")
            yield Label(" temp ")
            yield Input("0.7", id="chat-temp", type="number", compact=True, classes="chat-num")
            yield Label(" top-p ")
            yield Input("0.9", id="chat-top-p", type="number", compact=True, classes="chat-num")
            yield Label(" rep. penalty ")
            yield Input("1.1", id="chat-rep", type="number", compact=True, classes="chat-num")
            yield Checkbox("greedy", id="chat-greedy", compact=True)
        with Horizontal(id="chat-body"):
            with VerticalScroll(id="chat-tuned-box", classes="panel"):
                yield Static("", id="chat-tuned")
            with VerticalScroll(id="chat-base-box", classes="panel"):
                yield Static("", id="chat-base")
        yield Static(f"run {self.run_id} · enter sends · the model loads with the first message", id="chat-status")
        yield Input("", placeholder="your message", id="chat-input")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.client = self.tuitune.predict_factory(self.run_id)
        for side in SIDES:
            self.query_one(f"#chat-{side}-box").border_title = TITLES[side]
        self._draw_all()
        self.query_one("#chat-input", Input).focus()

    # -- settings --------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The generation settings from the form; a bad value raises TuituneError saying what to fix."""
        out: dict[str, Any] = {}
        system = self.query_one("#chat-system", Input).value.strip()
        if system:
            out["system"] = system
        try:
            out["max_new_tokens"] = int(self.query_one("#chat-max", Input).value)
        except ValueError:
            raise TuituneError("max new tokens must be a whole number, e.g. 128") from None
        if out["max_new_tokens"] <= 0:
            raise TuituneError("max new tokens must be > 0")
        try:
            out["repetition_penalty"] = float(self.query_one("#chat-rep", Input).value)
        except ValueError:
            raise TuituneError("repetition penalty must be a number, e.g. 1.1 (1: none)") from None
        if out["repetition_penalty"] <= 0:
            raise TuituneError("repetition penalty must be > 0 (1: none)")
        if self.query_one("#chat-greedy", Checkbox).value:
            out["do_sample"] = False
            return out
        try:
            out["temperature"] = float(self.query_one("#chat-temp", Input).value)
            out["top_p"] = float(self.query_one("#chat-top-p", Input).value)
        except ValueError:
            raise TuituneError("temperature and top-p must be numbers, e.g. 0.7 and 0.9") from None
        if out["temperature"] <= 0:
            raise TuituneError("temperature must be > 0 (or tick greedy)")
        if not 0 < out["top_p"] <= 1:
            raise TuituneError("top-p must be in (0, 1]")
        return out

    # -- asking ----------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "chat-input":
            self.query_one("#chat-input", Input).focus()
            return
        self.send(event.value)

    def send(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        if self.busy:
            self.notify("still answering: wait for the answer")
            return
        try:
            settings = self.settings()
        except TuituneError as err:
            self.tuitune.show_error(str(err))
            return
        sides = [s for s in SIDES if s == "tuned" or self.show_base]
        for side in sides:
            self.chats[side].pending, self.chats[side].partial = text, ""
            self.stream_log[side] = []
        self.busy = True
        self.query_one("#chat-input", Input).value = ""
        self._status("answering…")
        self._draw_all()
        self._generate(text, settings, [(s, self.chats[s].history()) for s in sides])

    @work(thread=True, exit_on_error=False, group="chat")
    def _generate(self, text: str, settings: dict[str, Any], sides: list[tuple[str, list[dict[str, str]]]]) -> None:
        client = self.client
        for i, (side, history) in enumerate(sides):
            last = i == len(sides) - 1
            try:
                if client is None:
                    raise TuituneError("the chat was closed")
                out = client.ask(text, base=side == "base", history=history,
                                 on_token=lambda piece, side=side: self.post_message(ChatToken(side, piece)),
                                 **settings)
            except TuituneError as err:
                self.post_message(ChatDone(side, error=str(err), last=last))
                continue
            self.post_message(ChatDone(side, answer=out.get("generated", ""), last=last))

    def on_chat_token(self, message: ChatToken) -> None:
        chat = self.chats[message.side]
        if chat.pending is None:
            return
        chat.partial += message.piece
        self.stream_log[message.side].append(chat.partial)
        self._draw(message.side)

    def on_chat_done(self, message: ChatDone) -> None:
        chat = self.chats[message.side]
        if chat.pending is not None:
            if message.error is None:
                chat.turns.append((chat.pending, (message.answer or "").strip()))
            chat.pending, chat.partial = None, ""
        if message.error is not None:
            self._status(f"[red]{escape(message.error)}[/red]")
        if message.last:
            self.busy = False
            if message.error is None:
                self._status(f"{len(self.chats['tuned'].turns)} turn(s) · enter sends · ctrl+r new chat")
        self._draw(message.side)

    # -- drawing ---------------------------------------------------------------------------------
    def _status(self, text: str) -> None:
        self.query_one("#chat-status", Static).update(text)

    def _draw(self, side: str) -> None:
        if side == "base" and not self.show_base:
            text = "[dim](hidden: ctrl+b)[/dim]"
        else:
            text = self.chats[side].render()
        self.query_one(f"#chat-{side}", Static).update(text)
        self.query_one(f"#chat-{side}-box", VerticalScroll).scroll_end(animate=False)

    def _draw_all(self) -> None:
        for side in SIDES:
            self._draw(side)

    # -- keys ------------------------------------------------------------------------------------
    def action_toggle_base(self) -> None:
        self.show_base = not self.show_base
        # hidden, the base panel gives its half of the width to the fine-tuned answer
        self.query_one("#chat-base-box").display = self.show_base
        self._draw("base")

    def action_reset(self) -> None:
        if self.busy:
            self.notify("still answering: wait for the answer")
            return
        self.chats = {side: Conversation() for side in SIDES}
        self._status("new chat")
        self._draw_all()
