"""Shared pieces of every screen: a typed handle on the app, and worker failures shown as one
clear message, never a crash."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, cast

from textual import work

from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable
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


def cursor_row_id(table: DataTable) -> int | None:
    """The integer key of the row under the table's cursor; None on an empty table."""
    if not table.row_count:
        return None
    try:
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
    except Exception:
        return None
    return int(key.value) if key and key.value else None


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
    def action_leave(self) -> None:
        self.app.pop_screen()


class PolledScreen(BaseScreen):
    """A screen whose data `_read()` is read in a worker thread every `poll_every` × the app's poll
    interval (never two reads at once) and handed to `_show(data)` on the UI thread. A screen whose
    data can no longer change (its run ended) calls `stop_polling()`."""

    poll_every = 4.0
    _loading = False
    _done = False
    _poll_timer: Any = None

    def start_polling(self, focus: str) -> None:
        self.query_one(focus).focus()
        self.reload()
        self._poll_timer = self.set_interval(self.tuitune.poll_s * self.poll_every, self.reload)

    def stop_polling(self) -> None:
        self._done = True
        if self._poll_timer is not None:
            self._poll_timer.stop()

    def reload(self) -> None:
        if not self._loading and not self._done:
            self._loading = True
            self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="reload")
    def _load(self) -> None:
        try:
            data = self._read()
        finally:
            self._loading = False
        self.app.call_from_thread(self._show, data)

    def _read(self) -> Any:
        raise NotImplementedError

    def _show(self, data: Any) -> None:
        raise NotImplementedError


class ServedScreen(BaseScreen):
    """A screen that asks a long-lived engine `serve` process (`self.client`); leaving it stops
    that process off the UI thread."""

    client: Any = None

    def on_unmount(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            threading.Thread(target=client.close, daemon=True).start()


class BaseModal(TuituneScreenMixin, ModalScreen):
    pass
