"""Shared pieces of every screen: worker failures become one clear message, never a crash."""

from __future__ import annotations

from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from tuitune.errors import TuituneError


def explain(err: BaseException | None) -> str:
    """One line for the user: our own messages as they are, anything else with its type."""
    if err is None:
        return "unknown error"
    if isinstance(err, TuituneError):
        return str(err)
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class WorkerErrors:
    """Mixin: a failed worker of this screen shows a message dialog (workers use exit_on_error=False)."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.app.show_error(explain(event.worker.error))  # type: ignore[attr-defined]


class BaseScreen(WorkerErrors, Screen):
    pass


class BaseModal(WorkerErrors, ModalScreen):
    pass
