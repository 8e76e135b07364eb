"""Shared pieces of every screen: a typed handle on the app, and worker failures shown as one
clear message, never a crash."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from tuitune.errors import TuituneError

if TYPE_CHECKING:
    from tuitune.app import TuituneApp


def explain(err: BaseException | None) -> str:
    """One line for the user: our own messages as they are, anything else with its type."""
    if err is None:
        return "unknown error"
    if isinstance(err, TuituneError):
        return str(err)
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class TuituneScreenMixin:
    """`self.tuitune`: the app with its store, draft and settings, typed; a failed worker of the
    screen shows a message dialog (workers use exit_on_error=False)."""

    @property
    def tuitune(self) -> "TuituneApp":
        return cast("TuituneApp", cast(Screen, self).app)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.tuitune.show_error(explain(event.worker.error))


class BaseScreen(TuituneScreenMixin, Screen):
    pass


class BaseModal(TuituneScreenMixin, ModalScreen):
    pass
